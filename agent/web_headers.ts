// A small Fetch `Headers` for the drover-agent bundle. scripts/build-agent.sh
// injects it (esbuild --inject), so every `Headers` the bundled code names
// (Connect builds one for each call and each error) is this class; the
// global is left alone.
//
// Why: Node 20's global Headers comes from undici, loaded on first use, and
// loading undici also compiles its llhttp WebAssembly parser. An idle agent
// never fetches anything, yet that first `new Headers()` cost it ~12 MiB of
// RSS (measured: `node -e 'new Headers()'` 52 MiB against 40 MiB for
// `node -e 0`), a fifth of its 60 MiB budget.
//
// It follows the Fetch standard for what Connect uses (names are
// case-insensitive and validated, append() joins values with ", ", iteration
// is sorted by name, set-cookie values stay apart); agent/web_headers.test.ts
// checks it against the global Headers. No guard (`immutable` etc.): nothing
// here needs one.

/** What the constructor takes, as the standard's HeadersInit. */
export type HeadersInit = Headers | Iterable<readonly [string, string]> | readonly (readonly [string, string])[] | Record<string, string>;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const INVALID_VALUE = /[\0\r\n]/;

export class Headers {
  // Lower-cased name → values in order of appending (more than one only for set-cookie).
  private readonly fields = new Map<string, string[]>();

  constructor(init?: HeadersInit) {
    if (init === undefined || init === null) return;
    if (init instanceof Headers || isIterable(init)) {
      for (const pair of init as Iterable<readonly string[]>) {
        if (pair.length !== 2) throw new TypeError("Headers: each header pair must have a name and a value");
        this.append(pair[0]!, pair[1]!);
      }
      return;
    }
    for (const [name, value] of Object.entries(init as Record<string, string>)) this.append(name, value);
  }

  append(name: string, value: string): void {
    const key = checkedName(name);
    const v = checkedValue(value);
    const values = this.fields.get(key);
    if (!values) this.fields.set(key, [v]);
    else if (key === "set-cookie") values.push(v);
    else values[0] = `${values[0]}, ${v}`;
  }

  set(name: string, value: string): void {
    this.fields.set(checkedName(name), [checkedValue(value)]);
  }

  get(name: string): string | null {
    const values = this.fields.get(checkedName(name));
    return values ? values.join(", ") : null;
  }

  getSetCookie(): string[] {
    return [...(this.fields.get("set-cookie") ?? [])];
  }

  has(name: string): boolean {
    return this.fields.has(checkedName(name));
  }

  delete(name: string): void {
    this.fields.delete(checkedName(name));
  }

  forEach(callback: (value: string, name: string, parent: Headers) => void, thisArg?: unknown): void {
    for (const [name, value] of this) callback.call(thisArg, value, name, this);
  }

  *entries(): IterableIterator<[string, string]> {
    for (const name of [...this.fields.keys()].sort()) {
      const values = this.fields.get(name)!;
      if (name === "set-cookie") for (const v of values) yield [name, v];
      else yield [name, values[0]!];
    }
  }

  *keys(): IterableIterator<string> {
    for (const [name] of this.entries()) yield name;
  }

  *values(): IterableIterator<string> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }

  get [Symbol.toStringTag](): string {
    return "Headers";
  }
}

function isIterable(value: object): value is Iterable<unknown> {
  return typeof (value as { [Symbol.iterator]?: unknown })[Symbol.iterator] === "function";
}

function checkedName(name: string): string {
  const s = String(name);
  if (!TOKEN.test(s)) throw new TypeError(`Headers: invalid header name ${JSON.stringify(s)}`);
  return s.toLowerCase();
}

/** Leading and trailing whitespace goes, as the standard normalises values; CR, LF and NUL are refused. */
function checkedValue(value: string): string {
  const s = String(value).replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, "");
  if (INVALID_VALUE.test(s)) throw new TypeError(`Headers: invalid header value ${JSON.stringify(s)}`);
  return s;
}
