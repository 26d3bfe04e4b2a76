// Sign-in: a bearer token from `#token=` or pasted, kept in sessionStorage only.
const KEY = "postbacks.token";

export type Identity = { token: string; role: "admin" | "affiliate"; affiliateId: string | null; subject: string };

export function tokenFromHash(): string | null {
  const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (!match) return null;
  // The token must not stay in the address bar (history, screenshots, shared links).
  history.replaceState(null, "", window.location.pathname + window.location.search);
  return decodeURIComponent(match[1]);
}

export function storedToken(): string | null {
  return sessionStorage.getItem(KEY);
}

export function storeToken(token: string): void {
  sessionStorage.setItem(KEY, token);
}

export function forgetToken(): void {
  sessionStorage.removeItem(KEY);
}

/** The claims the page needs to shape itself; the API checks the token, not the page. */
export function identityOf(token: string): Identity | null {
  const parts = token.trim().split(".");
  if (parts.length !== 3) return null;
  try {
    const json = atob(parts[1].replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(parts[1].length / 4) * 4, "="));
    const claims = JSON.parse(json) as Record<string, unknown>;
    const role = claims.role === "admin" || claims.role === "affiliate" ? claims.role : null;
    if (!role) return null;
    const affiliateId = typeof claims.affiliate_id === "string" ? claims.affiliate_id : null;
    return { token: token.trim(), role, affiliateId, subject: String(claims.sub ?? "") };
  } catch {
    return null;
  }
}
