// The fleet service as its own process (split mode). See services/split.ts.
import { runSplitService } from "../split.ts";

await runSplitService("fleet");
