import { useCallback, useEffect, useState } from "react";
import { unwrap, type Api, type Delivery } from "./api/client";
import { formatTime } from "./format";

const TONE: Record<string, string> = {
  delivered: "ok",
  dead_lettered: "bad",
  cancelled: "idle",
  retrying: "warn",
  failed: "bad",
};

export function DeliveryLog({
  api,
  id,
  onUnauthorized,
}: {
  api: Api;
  id: string;
  onUnauthorized: (error: unknown) => boolean;
}) {
  const [items, setItems] = useState<Delivery[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [state, setState] = useState<"loading" | "ready" | "error">("loading");
  const [error, setError] = useState<string | null>(null);

  const load = useCallback(
    async (after: string | null) => {
      if (!after) setState("loading");
      try {
        const page = await unwrap(
          api.GET("/postbacks/{id}/deliveries", {
            params: { path: { id }, query: { limit: 20, ...(after ? { cursor: after } : {}) } },
          }),
        );
        setItems((current) => (after ? [...current, ...page.items] : page.items));
        setCursor(page.next_cursor);
        setState("ready");
      } catch (caught) {
        if (onUnauthorized(caught)) return;
        setError(caught instanceof Error ? caught.message : String(caught));
        setState("error");
      }
    },
    [api, id, onUnauthorized],
  );

  useEffect(() => {
    void load(null);
  }, [load]);

  return (
    <section className="log" aria-labelledby="log-title" aria-busy={state === "loading"}>
      <div className="section-head">
        <h3 id="log-title">Delivery log</h3>
        <button type="button" className="ghost" onClick={() => void load(null)}>
          Refresh log
        </button>
      </div>
      {state === "loading" && (
        <p className="state" role="status">
          Loading deliveries…
        </p>
      )}
      {state === "error" && (
        <p className="banner error" role="alert">
          Could not load the delivery log: {error}
        </p>
      )}
      {state === "ready" && items.length === 0 && (
        <p className="state empty">No deliveries yet. They appear here when a matching conversion changes status.</p>
      )}
      {state === "ready" && items.length > 0 && (
        <ol className="deliveries">
          {items.map((delivery) => (
            <li key={delivery.id} className="delivery">
              <div className="delivery-head">
                <span className={`badge ${TONE[delivery.state] ?? "idle"}`}>{delivery.state.replace("_", " ")}</span>
                <span>
                  <strong>{delivery.status}</strong> · conversion <code>{delivery.conversion_id}</code>
                  {delivery.test && <span className="badge idle">test</span>}
                </span>
                <span className="muted">{formatTime(delivery.created_at)}</span>
              </div>
              {delivery.reason && (
                <p className="reason">
                  Reason: <strong>{delivery.reason}</strong>
                </p>
              )}
              <code className="wrap sent-url">{delivery.url}</code>
              {delivery.next_attempt_at && (
                <p className="muted">Next attempt {formatTime(delivery.next_attempt_at)}</p>
              )}
              {delivery.attempts.length > 0 && (
                <table className="attempts">
                  <caption className="visually-hidden">Attempts of delivery {delivery.id}</caption>
                  <thead>
                    <tr>
                      <th scope="col">#</th>
                      <th scope="col">At</th>
                      <th scope="col">Status code</th>
                      <th scope="col">Duration</th>
                      <th scope="col">Error</th>
                      <th scope="col">Response excerpt</th>
                    </tr>
                  </thead>
                  <tbody>
                    {delivery.attempts.map((attempt) => (
                      <tr key={attempt.number}>
                        <td>{attempt.number}</td>
                        <td>{formatTime(attempt.at)}</td>
                        <td>{attempt.status_code ?? "—"}</td>
                        <td>{attempt.duration_ms !== null ? `${attempt.duration_ms} ms` : "—"}</td>
                        <td>{attempt.error ?? "—"}</td>
                        <td>
                          <code className="excerpt">{attempt.response_excerpt || "—"}</code>
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              )}
            </li>
          ))}
        </ol>
      )}
      {state === "ready" && cursor && (
        <div className="more">
          <button type="button" className="secondary" onClick={() => void load(cursor)}>
            Load more deliveries
          </button>
        </div>
      )}
    </section>
  );
}
