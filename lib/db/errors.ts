/** True for Prisma's unique-constraint violation (P2002), which signals a lost race on insert. */
export function isUniqueViolation(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === "P2002";
}
