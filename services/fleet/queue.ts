import { Code, ConnectError } from "@connectrpc/connect";

/**
 * A queue that one consumer drains as an async iterable, for the messages a
 * server stream sends. Producers push synchronously; end() lets the consumer
 * take what is queued and then finish (or throw the given error). Pushing
 * more than `limit` items ends it with RESOURCE_EXHAUSTED: a consumer that
 * cannot keep up must not hold unbounded memory.
 */
export class MessageQueue<T> {
  private items: T[] = [];
  private head = 0;
  private wake: (() => void) | undefined;
  private ending: { error?: ConnectError } | undefined;

  constructor(private readonly limit: number) {}

  get ended(): boolean {
    return this.ending !== undefined;
  }

  get size(): number {
    return this.items.length - this.head;
  }

  /** Queues an item; false (and nothing queued) once ended. */
  push(item: T): boolean {
    if (this.ending) return false;
    if (this.size >= this.limit) {
      this.end(new ConnectError(`more than ${this.limit} messages waiting to be sent: the receiver is too slow`, Code.ResourceExhausted));
      return false;
    }
    this.items.push(item);
    this.poke();
    return true;
  }

  /** Ends the queue: the consumer gets what is queued, then finishes, or throws `error`. The first call wins. */
  end(error?: ConnectError): void {
    if (this.ending) return;
    this.ending = { error };
    // An error is urgent (a revoked credential, a replaced stream): drop what
    // is queued. Without one, what is queued is still sent, from `head` on.
    if (error) {
      this.items = [];
      this.head = 0;
    }
    this.poke();
  }

  async *drain(): AsyncGenerator<T, void, undefined> {
    for (;;) {
      if (this.head < this.items.length) {
        const item = this.items[this.head]!;
        this.items[this.head++] = undefined as T;
        if (this.head > 1024 && this.head * 2 > this.items.length) {
          this.items = this.items.slice(this.head);
          this.head = 0;
        }
        yield item;
        continue;
      }
      if (this.ending) {
        if (this.ending.error) throw this.ending.error;
        return;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private poke(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
