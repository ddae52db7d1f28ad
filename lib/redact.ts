// Secret values in output: the agent replaces them before a byte leaves the
// machine, and the Log service does the same again before storing (a closed
// bundle shipped after an agent restart no longer has the values on the
// agent's side). Both use this one definition, so they agree on what counts.

export const REDACTED = "[REDACTED]";
const REDACTED_BYTES = new TextEncoder().encode(REDACTED);

/**
 * The values worth replacing: non-empty, deduplicated, longest first (so a
 * value containing another is replaced whole). Values shorter than 3
 * characters are left alone: replacing every "1" or "ab" in output would
 * destroy it and hide nothing.
 */
export function secretPatterns(values: readonly string[]): Uint8Array[] {
  const unique = [...new Set(values.filter((v) => v.length >= 3))];
  unique.sort((a, b) => b.length - a.length);
  return unique.map((v) => new TextEncoder().encode(v));
}

function matchAt(data: Uint8Array, at: number, pattern: Uint8Array): boolean {
  if (at + pattern.length > data.length) return false;
  for (let i = 0; i < pattern.length; i++) if (data[at + i] !== pattern[i]) return false;
  return true;
}

/** data with every occurrence of a pattern replaced by [REDACTED]; the same array when nothing matched. */
export function redact(data: Uint8Array, patterns: readonly Uint8Array[]): Uint8Array {
  if (patterns.length === 0 || data.length === 0) return data;
  const firsts = new Set(patterns.map((p) => p[0]));
  let found = false;
  let copiedUpTo = 0;
  const parts: Uint8Array[] = [];
  for (let i = 0; i < data.length; ) {
    if (firsts.has(data[i]!)) {
      const hit = patterns.find((p) => matchAt(data, i, p));
      if (hit) {
        parts.push(data.subarray(copiedUpTo, i), REDACTED_BYTES);
        i += hit.length;
        copiedUpTo = i;
        found = true;
        continue;
      }
    }
    i++;
  }
  if (!found) return data;
  parts.push(data.subarray(copiedUpTo));
  return Buffer.concat(parts);
}

/**
 * How many bytes at the end of data could be the start of a secret value
 * that the next bytes complete: a reader that redacts output as it grows
 * holds these back until more arrives (or the output ends), so a value
 * split across two reads is still found.
 */
export function heldBackLength(data: Uint8Array, patterns: readonly Uint8Array[]): number {
  let longest = 0;
  for (const p of patterns) {
    const max = Math.min(p.length - 1, data.length);
    for (let n = max; n > longest; n--) {
      if (matchAt(data, data.length - n, p.subarray(0, n))) {
        longest = n;
        break;
      }
    }
  }
  return longest;
}
