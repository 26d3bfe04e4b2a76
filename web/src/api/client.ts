// The page's only way to the API: openapi-fetch over the types generated from /openapi.json.
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Postback = components["schemas"]["PostbackOut"];
export type PostbackCreate = components["schemas"]["PostbackCreate"];
export type PostbackPatch = components["schemas"]["PostbackPatch"];
export type Delivery = components["schemas"]["DeliveryOut"];
export type Parameter = components["schemas"]["Parameter"];
export type Problem = components["schemas"]["Problem"];
export type TestFireResult = components["schemas"]["TestFireResult"];
export type ConversionStatus = Postback["conversion_statuses"][number];
export type Api = ReturnType<typeof createClient<paths>>;

/** Where the API is: `apiBaseUrl` of /config.json (the local stack), else `/api` on this origin (AWS). */
export async function apiBaseUrl(): Promise<string> {
  try {
    const response = await fetch("/config.json", { cache: "no-store" });
    if (response.ok) {
      const config = (await response.json()) as { apiBaseUrl?: unknown };
      if (typeof config.apiBaseUrl === "string" && config.apiBaseUrl) return config.apiBaseUrl.replace(/\/$/, "");
    }
  } catch {
    // No runtime config: same-origin deployment.
  }
  return "/api";
}

export function createApi(baseUrl: string, token: string): Api {
  const api = createClient<paths>({ baseUrl });
  const auth: Middleware = {
    onRequest({ request }) {
      request.headers.set("Authorization", `Bearer ${token}`);
      return request;
    },
  };
  api.use(auth);
  return api;
}

/** An API failure as the page shows it: the problem document when there is one. */
export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem | null;
  readonly retryAfter: string | null;

  constructor(status: number, problem: Problem | null, retryAfter: string | null = null) {
    super(problem?.detail || problem?.title || `The API answered ${status}.`);
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }

  fieldErrors(): Record<string, string> {
    const byField: Record<string, string> = {};
    for (const error of this.problem?.errors ?? []) {
      const field = error.field.replace(/\[\d+\]$/, "");
      byField[field] = byField[field] ? `${byField[field]}; ${error.message}` : error.message;
    }
    return byField;
  }
}

type Outcome<T> = { data?: T; error?: unknown; response: Response };

/** The data of a call, or an ApiError (also for a network failure, as status 0). */
export async function unwrap<T>(call: Promise<Outcome<T>>): Promise<T> {
  let outcome: Outcome<T>;
  try {
    outcome = await call;
  } catch {
    throw new ApiError(0, { type: "about:blank", title: "Network error", status: 0, detail: "The API cannot be reached." });
  }
  if (outcome.response.ok) return outcome.data as T;
  const problem = isProblem(outcome.error) ? outcome.error : null;
  throw new ApiError(outcome.response.status, problem, outcome.response.headers.get("Retry-After"));
}

function isProblem(value: unknown): value is Problem {
  return typeof value === "object" && value !== null && "status" in value && "title" in value;
}
