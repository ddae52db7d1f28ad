// The fleet service as its own process (split mode). See services/split.ts.
import { setFlagsFromString } from "node:v8";
import { runSplitService } from "../split.ts";

// Fleet holds one stream per agent for days, and each heartbeat leaves the
// previous read's promises and buffers as garbage in the old generation
// (they lived a whole heartbeat interval). By default V8 lets the old
// generation grow to two or three times what the last full collection kept
// before collecting again: at 2,000 agents ~130-150 KiB of RSS per agent for
// ~60 KiB of live objects (bench/fleet_load.ts). Growing by at most 30 %
// between full collections brought it to ~100 KiB, for a full collection
// every ~20 s instead of every minute or more (mostly incremental and
// concurrent; the final pause was 7-25 ms on a quiet machine, up to 90 ms on
// a saturated one). V8 reads the flag at every full collection, so setting
// it here, once, is enough.
setFlagsFromString("--heap-growing-percent=30");

await runSplitService("fleet");
