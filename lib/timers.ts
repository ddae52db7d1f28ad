/** Resolves after ms, or at once when the signal aborts (never rejects): how background loops wait between rounds. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * How a background loop waits between rounds and is woken early: sleep()
 * resolves after ms, on ring(), or when the signal aborts. A ring that
 * comes while the loop is busy is remembered (rang), so the loop can look
 * again at once instead of sleeping through news that came mid-round.
 */
export class Alarm {
  private rung = false;
  private cut?: () => void;

  /** Wakes a sleeping loop, or tells a busy one to look again. */
  ring(): void {
    this.rung = true;
    this.cut?.();
  }

  /** Whether ring() was called since the last reset() or sleep(); resets it. */
  rang(): boolean {
    const r = this.rung;
    this.rung = false;
    return r;
  }

  /** Forgets rings so far (call at the start of a round). */
  reset(): void {
    this.rung = false;
  }

  /** Resolves after ms, on ring(), or when the signal aborts. */
  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      }
      this.cut = done;
      signal?.addEventListener("abort", done, { once: true });
    });
    this.cut = undefined;
    this.rung = false;
  }
}
