// A push queue that is an AsyncIterable: the request side of a bidi stream.
//
// connect-node sends a client stream by iterating an AsyncIterable, pulling
// the next message when the previous one is written. The agent produces its
// messages from timers and handlers, not from a loop, so it pushes them here
// and the transport pulls. Closing the queue ends the iteration, which
// half-closes the stream (the client says "no more requests" and keeps
// reading responses).

/** A single-consumer queue: push() from anywhere, iterate once. */
export class MessageQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiter: (() => void) | undefined;
  private closed = false;
  private error: unknown;
  private iterated = false;

  /** Messages pushed and not yet taken by the consumer. */
  get size(): number {
    return this.items.length;
  }

  /** True once close() was called (or the consumer stopped iterating). */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Queues item; returns false (and drops it) when the queue is closed. */
  push(item: T): boolean {
    if (this.closed) return false;
    this.items.push(item);
    this.wake();
    return true;
  }

  /**
   * Ends the queue. The consumer still gets the items already pushed, then
   * the iteration ends, or throws `error` when one is given. Idempotent.
   */
  close(error?: unknown): void {
    if (this.closed) return;
    this.closed = true;
    this.error = error;
    this.wake();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.iterated) throw new Error("MessageQueue can be iterated only once");
    this.iterated = true;
    try {
      for (;;) {
        if (this.items.length > 0) {
          yield this.items.shift() as T;
          continue;
        }
        if (this.closed) {
          if (this.error !== undefined) throw this.error;
          return;
        }
        await new Promise<void>((resolve) => (this.waiter = resolve));
      }
    } finally {
      // The consumer broke out (or the stream failed): nobody will read what
      // is pushed from now on, so refuse it instead of growing forever.
      this.closed = true;
      this.items.length = 0;
    }
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }
}
