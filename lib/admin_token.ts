import { existsSync, readFileSync, writeFileSync, chmodSync } from "node:fs";
import { newSecret } from "./auth/tokens.ts";

/**
 * The dev-mode admin token: read from `file`, or created and written there
 * (mode 0600, readable only by the user who runs Drover) on first start. The
 * caller then makes sure the token exists in the database.
 */
export function loadOrCreateAdminSecret(file: string): { secret: string; created: boolean } {
  if (existsSync(file)) {
    const secret = readFileSync(file, "utf8").trim();
    if (secret.length >= 16) return { secret, created: false };
  }
  const secret = newSecret();
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  // writeFileSync keeps the mode of a file that already existed.
  chmodSync(file, 0o600);
  return { secret, created: true };
}
