/** Milliseconds in a google.protobuf.Duration. */
export function durationMs(d: { seconds: bigint; nanos: number }): number {
  return Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
}

/** 850 → "850ms", 75_000 → "1m15s", 7_500_000 → "2h5m". */
export function durationText(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 && ms % 1000 !== 0 ? 1 : 0)}s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ""}`;
  const m = Math.round(s / 60);
  if (m < 1440) return `${Math.floor(m / 60)}h${m % 60 ? `${m % 60}m` : ""}`;
  return `${Math.floor(m / 1440)}d${Math.floor((m % 1440) / 60) ? `${Math.floor((m % 1440) / 60)}h` : ""}`;
}
