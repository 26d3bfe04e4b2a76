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
