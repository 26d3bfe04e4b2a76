import type { Postback } from "./api/client";

export function formatTime(value: string | null | undefined): string {
  if (!value) return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

export type Health = { label: string; tone: "ok" | "warn" | "bad" | "idle"; detail: string };

export function healthOf(postback: Postback): Health {
  if (!postback.enabled) return { label: "Disabled", tone: "idle", detail: "Disabled: it fires nothing" };
  if (postback.consecutive_failures > 0) {
    const reason = postback.last_failure_reason ? ` (last: ${postback.last_failure_reason})` : "";
    return {
      label: `Failing ×${postback.consecutive_failures}`,
      tone: postback.consecutive_failures > 2 ? "bad" : "warn",
      detail: `${postback.consecutive_failures} dead-lettered since the last success${reason}`,
    };
  }
  if (postback.last_success_at) {
    return { label: "Healthy", tone: "ok", detail: `Last delivered ${formatTime(postback.last_success_at)}` };
  }
  return { label: "No deliveries yet", tone: "idle", detail: "Nothing delivered yet" };
}

export function scopeText(postback: Postback): string {
  if (postback.scope === "offer") return `Offer: ${postback.included_offer_ids.join(", ")}`;
  return postback.excluded_offer_ids.length ? `Global, except ${postback.excluded_offer_ids.join(", ")}` : "Global";
}

export function delayText(seconds: number): string {
  if (seconds === 0) return "None: the first attempt is sent at once";
  return `${seconds} s after the match`;
}

export const SIGNATURE = "{signature}";

/**
 * Why `{signature}` is not where the API accepts it — the value of the URL's final query parameter,
 * at its very end (docs/contract.md §6) — or null when it is absent or well placed. The API decides;
 * this only warns before saving.
 */
export function signatureProblem(url: string): string | null {
  const count = url.split(SIGNATURE).length - 1;
  if (count === 0) return null;
  if (count > 1) return "{signature} may appear only once.";
  const head = url.slice(0, url.length - SIGNATURE.length);
  const schemeEnd = head.indexOf("://");
  const queryStart = head.indexOf("?", schemeEnd >= 0 ? schemeEnd + 3 : 0);
  const lastParameter = head.slice(Math.max(head.lastIndexOf("&"), queryStart) + 1);
  if (!url.endsWith(SIGNATURE) || url.includes("#") || queryStart < 0 || !lastParameter.endsWith("=") || lastParameter.length < 2) {
    return "{signature} must be at the very end of the URL, as the value of its final query parameter (…&sig={signature}): the API refuses it anywhere else.";
  }
  if (lastParameter.includes("{") || lastParameter.includes("}")) {
    return "The name of the {signature} parameter must be plain text, without placeholders.";
  }
  return null;
}
