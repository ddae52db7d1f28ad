#!/usr/bin/env node
// `drover` on PATH: registers tsx, then runs the TypeScript entry point.
import { register } from "tsx/esm/api";
register();
await import("./main.ts");
