// Labels come from three places; the effective set overlays them in a fixed
// order, so an operator always has the last word and an agent can never
// override what its registration token or an operator said about it.

export type Labels = Record<string, string>;

/** The labels an agent is matched by: reported, overlaid by its token's, overlaid by the operator's. */
export function effectiveLabels(reported: Labels, token: Labels, operator: Labels): Labels {
  return { ...reported, ...token, ...operator };
}

/** True when `labels` has every key of `selector` with the same value (an empty selector matches all). */
export function matchesSelector(labels: Labels, selector: Labels): boolean {
  for (const key in selector) if (labels[key] !== selector[key]) return false;
  return true;
}

/** A label map read back from a JSONB column; anything that is not a string value is dropped. */
export function labelsFrom(json: unknown): Labels {
  const out: Labels = {};
  if (json && typeof json === "object" && !Array.isArray(json)) {
    for (const [k, v] of Object.entries(json)) if (typeof v === "string") out[k] = v;
  }
  return out;
}
