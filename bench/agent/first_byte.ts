// When the first byte of a file appears, seen through inotify (fs.watch)
// rather than by polling: the benchmark shares 2 cores with the agent it
// measures, and a polling loop would take CPU from it.
//
// The file lives in a directory the agent creates (an attempt's bundle: the
// agent ignores an Assignment whose bundle already exists, so it cannot be
// made in advance). So the watch starts on the parent, which must exist;
// when the directory appears there, a second watch starts on it, and each
// notification about the file is timed as it arrives, then the file is
// stat'ed: the first that finds it non-empty gives the time. Opening the
// file (the agent's open for appending) raises no modify event, so that
// notification is the first write, or the creation when both come in one
// batch. The time is an upper bound: inotify delivery and this process's
// event loop come on top.
//
// Between the directory's creation and the second watch the file may
// already have been written (the agent makes the directory, writes its
// manifest, opens the logs and spawns the command before anything is
// written, so this is rare); then the time is when the second watch began,
// a later bound still, and `late` says so.

import { statSync, watch, type FSWatcher } from "node:fs";
import { basename, dirname, join } from "node:path";

export interface FirstByte {
  /** performance.now() of the notification that found the file non-empty. */
  at: number;
  /** True when the bytes were there before the file could be watched: `at` is later than the write. */
  late: boolean;
}

/** Watches for `dir/file` to become non-empty, where dir's parent exists and dir may not yet. */
export function watchFirstByte(dir: string, file: string): { firstByte: Promise<FirstByte>; close: () => void } {
  const path = join(dir, file);
  let resolveFirst!: (value: FirstByte) => void;
  let rejectFirst!: (err: Error) => void;
  const firstByte = new Promise<FirstByte>((resolve, reject) => {
    resolveFirst = resolve;
    rejectFirst = reject;
  });
  // A caller that gave up (and closed the watch) need not also catch.
  firstByte.catch(() => undefined);
  let done = false;
  const watchers: FSWatcher[] = [];
  const settle = (outcome: FirstByte | Error) => {
    if (done) return;
    done = true;
    for (const w of watchers) w.close();
    if (outcome instanceof Error) rejectFirst(outcome);
    else resolveFirst(outcome);
  };
  const watchDir = () => {
    const inner = watch(dir, (_event, filename) => {
      if (filename !== file) return;
      const at = performance.now();
      if (sizeOf(path) > 0) settle({ at, late: false });
    });
    inner.on("error", (err) => settle(err));
    watchers.push(inner);
    const at = performance.now();
    if (sizeOf(path) > 0) settle({ at, late: true });
  };

  const parent = watch(dirname(dir), (_event, filename) => {
    if (done || filename !== basename(dir) || watchers.length > 1) return;
    try {
      watchDir();
    } catch (err) {
      // Created and removed again, or not a directory.
      settle(err as Error);
    }
  });
  parent.on("error", (err) => settle(err));
  watchers.push(parent);
  return { firstByte, close: () => settle(new Error(`stopped watching ${path} before its first byte`)) };
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
