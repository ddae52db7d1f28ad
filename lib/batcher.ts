// Coalesces many small calls into one: callers add items one at a time and
// each gets its own result, while the work runs once per batch. This is how
// a thousand submits or job events become one database round trip instead
// of a thousand.
//
// A batch runs when it is full, or when the event loop has had a chance to
// gather more (`delayMs`, 0 = the next turn of the loop). While `concurrency`
// batches are running, new items wait and form the next batch: under load,
// batches grow by themselves, and at low load an item waits at most one turn.

/** Runs one batch: one result per item, in order, or a throw that fails every item in it. */
export type BatchRunner<T, R> = (items: T[]) => Promise<R[]>;

export interface BatcherOptions {
  /** Most items in one batch. */
  maxSize: number;
  /** How long the first item of a batch waits for company, ms; 0: until the next turn of the event loop. */
  delayMs?: number;
  /** Batches running at once. */
  concurrency?: number;
}

interface Waiting<T, R> {
  item: T;
  resolve: (result: R) => void;
  reject: (err: unknown) => void;
}

/** Adds items one by one, runs them in batches; promises each caller its own item's result. */
export class Batcher<T, R> {
  private queue: Waiting<T, R>[] = [];
  private running = 0;
  private timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  private readonly maxSize: number;
  private readonly delayMs: number;
  private readonly concurrency: number;

  constructor(
    private readonly run: BatchRunner<T, R>,
    options: BatcherOptions,
  ) {
    this.maxSize = options.maxSize;
    this.delayMs = options.delayMs ?? 0;
    this.concurrency = options.concurrency ?? 1;
  }

  /** Queues an item; resolves with its result once its batch ran. */
  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  /** Items waiting or running. */
  get pending(): number {
    return this.queue.length;
  }

  private schedule(): void {
    if (this.running >= this.concurrency) return; // a finishing batch picks the queue up
    if (this.queue.length >= this.maxSize) {
      this.clearTimer();
      this.flush();
      return;
    }
    if (this.timer) return;
    const fire = () => {
      this.timer = undefined;
      this.flush();
    };
    this.timer = this.delayMs > 0 ? setTimeout(fire, this.delayMs) : setImmediate(fire);
  }

  private clearTimer(): void {
    if (!this.timer) return;
    if (this.delayMs > 0) clearTimeout(this.timer as NodeJS.Timeout);
    else clearImmediate(this.timer as NodeJS.Immediate);
    this.timer = undefined;
  }

  private flush(): void {
    while (this.running < this.concurrency && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxSize);
      this.running++;
      void this.runBatch(batch);
    }
  }

  private async runBatch(batch: Waiting<T, R>[]): Promise<void> {
    try {
      const results = await this.run(batch.map((w) => w.item));
      if (results.length !== batch.length) throw new Error(`a batch of ${batch.length} returned ${results.length} results`);
      batch.forEach((w, i) => w.resolve(results[i]!));
    } catch (err) {
      for (const w of batch) w.reject(err);
    } finally {
      this.running--;
      if (this.queue.length > 0) this.schedule();
    }
  }
}
