import { busContract } from "./bus.contract.ts";
import { createMemoryBus } from "./memory.ts";

busContract("the memory bus", async () => createMemoryBus());
