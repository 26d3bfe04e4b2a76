import { useCallback, useEffect, useState } from "react";
import { ApiError, unwrap, type Api, type Postback, type TestFireResult } from "./api/client";
import { DeliveryLog } from "./DeliveryLog";
import { delayText, formatTime, healthOf, scopeText } from "./format";
import { Chips } from "./PostbacksPage";
import { SigningSecret } from "./SigningSecret";

export function PostbackDetails({
  api,
  id,
  isAdmin,
  onEdit,
  onDeleted,
  onUnauthorized,
}: {
  api: Api;
  id: string;
  isAdmin: boolean;
  onEdit: (postback: Postback) => void;
  onDeleted: (id: string) => void;
  onUnauthorized: (error: unknown) => boolean;
}) {
  const [postback, setPostback] = useState<Postback | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [test, setTest] = useState<TestFireResult | null>(null);
  const [testError, setTestError] = useState<string | null>(null);
  const [logVersion, setLogVersion] = useState(0);

  const fail = useCallback(
    (caught: unknown, set: (message: string) => void) => {
      if (!onUnauthorized(caught)) set(caught instanceof Error ? caught.message : String(caught));
    },
    [onUnauthorized],
  );

  useEffect(() => {
    unwrap(api.GET("/postbacks/{id}", { params: { path: { id } } }))
      .then(setPostback)
      .catch((caught) => fail(caught, setError));
  }, [api, id, fail]);

  const remove = async () => {
    setBusy(true);
    try {
      await unwrap(api.DELETE("/postbacks/{id}", { params: { path: { id } } }));
      onDeleted(id);
    } catch (caught) {
      fail(caught, setError);
      setBusy(false);
      setConfirming(false);
    }
  };

  const fire = async () => {
    setBusy(true);
    setTest(null);
    setTestError(null);
    try {
      setTest(await unwrap(api.POST("/postbacks/{id}/test", { params: { path: { id } } })));
      setLogVersion((version) => version + 1);
    } catch (caught) {
      if (caught instanceof ApiError && caught.status === 429) {
        fail(caught, (message) =>
          setTestError(`${message}${caught.retryAfter ? ` Try again in ${caught.retryAfter} s.` : ""}`),
        );
      } else {
        fail(caught, setTestError);
      }
    } finally {
      setBusy(false);
    }
  };

  if (error) {
    return (
      <p className="banner error" role="alert">
        {error}
      </p>
    );
  }
  if (!postback) {
    return (
      <p className="state" role="status">
        Loading the postback…
      </p>
    );
  }
  const health = healthOf(postback);
  return (
    <div className="details">
      <dl className="facts">
        <dt>ID</dt>
        <dd>
          <code>{postback.id}</code>
        </dd>
        {isAdmin && (
          <>
            <dt>Source</dt>
            <dd>{postback.affiliate_id}</dd>
          </>
        )}
        <dt>Scope</dt>
        <dd>{scopeText(postback)}</dd>
        <dt>Conversion types</dt>
        <dd>
          <Chips values={postback.conversion_types} />
        </dd>
        <dt>Conversion statuses</dt>
        <dd>
          <Chips values={postback.conversion_statuses} />
        </dd>
        <dt>URL</dt>
        <dd>
          <code className="wrap">{postback.url}</code>
        </dd>
        <dt>Delay</dt>
        <dd>{delayText(postback.delay_seconds)}</dd>
        <dt>Health</dt>
        <dd>
          <span className={`badge ${health.tone}`}>{health.label}</span> <span className="muted">{health.detail}</span>
          {postback.host_paused_until && (
            <div className="muted">Host paused until {formatTime(postback.host_paused_until)}</div>
          )}
        </dd>
        <dt>Created</dt>
        <dd>
          {formatTime(postback.created_at)} <span className="muted">by {postback.created_by ?? "—"}</span>
        </dd>
        <dt>Updated</dt>
        <dd>
          {formatTime(postback.updated_at)} <span className="muted">by {postback.updated_by ?? "—"}</span>{" "}
          <span className="muted">(version {postback.version})</span>
        </dd>
      </dl>
      <div className="actions">
        <button type="button" className="primary" onClick={() => onEdit(postback)} disabled={busy}>
          Edit
        </button>
        <button type="button" className="secondary" onClick={() => void fire()} disabled={busy}>
          Test
        </button>
        <button type="button" className="danger" onClick={() => setConfirming(true)} disabled={busy || confirming}>
          Delete
        </button>
      </div>
      {confirming && (
        <div className="banner warn" role="alertdialog" aria-labelledby="confirm-text">
          <p id="confirm-text">Delete this postback? It never fires again, and waiting deliveries are cancelled.</p>
          <div className="actions">
            <button type="button" className="danger" onClick={() => void remove()} disabled={busy} autoFocus>
              Yes, delete
            </button>
            <button type="button" className="ghost" onClick={() => setConfirming(false)}>
              Keep it
            </button>
          </div>
        </div>
      )}
      <div aria-live="polite">
        {testError && (
          <p className="banner error" role="alert">
            Test failed: {testError}
          </p>
        )}
        {test && (
          <section className="test-result" aria-labelledby="test-title">
            <h3 id="test-title">Test fire</h3>
            <dl className="facts">
              <dt>Rendered URL</dt>
              <dd>
                <code className="wrap">{test.url}</code>
              </dd>
              <dt>Outcome</dt>
              <dd>
                <span className={`badge ${test.outcome.delivered ? "ok" : "bad"}`}>
                  {test.outcome.delivered ? "Delivered" : test.outcome.classification}
                </span>{" "}
                {test.outcome.status_code !== null && <span>HTTP {test.outcome.status_code}</span>}
                {test.outcome.duration_ms !== null && <span className="muted"> · {test.outcome.duration_ms} ms</span>}
                {test.outcome.error && <div className="muted">Error: {test.outcome.error}</div>}
              </dd>
            </dl>
          </section>
        )}
      </div>
      <SigningSecret api={api} id={postback.id} onUnauthorized={onUnauthorized} />
      <DeliveryLog key={logVersion} api={api} id={postback.id} onUnauthorized={onUnauthorized} />
    </div>
  );
}
