/** Milliseconds in a google.protobuf.Duration. */
export function durationMs(d: { seconds: bigint; nanos: number }): number {
  return Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
}
