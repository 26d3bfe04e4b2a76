import { useRef, useState } from "react";
import { unwrap, type Api } from "./api/client";

/**
 * A postback's signing secret (docs/receiving.md): shown on request, rotated after a confirmation.
 * The secret lives in this component's state only — never in storage, never logged — and is gone
 * when the details close (the component unmounts) or **Hide** is pressed.
 */
export function SigningSecret({
  api,
  id,
  onUnauthorized,
}: {
  api: Api;
  id: string;
  onUnauthorized: (error: unknown) => boolean;
}) {
  const [secret, setSecret] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState<string | null>(null);
  const field = useRef<HTMLInputElement>(null);

  const call = async (rotate: boolean) => {
    setBusy(true);
    setError(null);
    setStatus(null);
    try {
      const options = { params: { path: { id } } };
      const answer = await unwrap(
        rotate ? api.POST("/postbacks/{id}/signing-secret", options) : api.GET("/postbacks/{id}/signing-secret", options),
      );
      setSecret(answer.secret);
      if (rotate) {
        setConfirming(false);
        setStatus("Signing secret rotated: GETs sent from now on are signed with the new one.");
      }
    } catch (caught) {
      if (!onUnauthorized(caught)) setError(caught instanceof Error ? caught.message : String(caught));
    } finally {
      setBusy(false);
    }
  };

  const copy = async () => {
    if (!secret) return;
    try {
      await navigator.clipboard.writeText(secret);
    } catch {
      // No clipboard API (an insecure origin): copy the selected field the old way.
      field.current?.select();
      if (!document.execCommand("copy")) {
        setStatus("Copying is not available here: select the secret and copy it.");
        return;
      }
    }
    setStatus("Signing secret copied.");
  };

  return (
    <section className="signing" aria-labelledby="signing-title">
      <h3 id="signing-title">Signing secret</h3>
      <p className="hint" id="signing-hint">
        With <code>{"{timestamp}"}</code> and <code>{"{signature}"}</code> in the URL, your tracker verifies each GET:
        it computes the base64url HMAC-SHA256 of the request target up to the signature value with this secret,
        compares it with the signature and checks that the timestamp is within 5 minutes (the Postbacks docs'
        “Receiving signed postbacks” guide has tested code). Keep it like a password.
      </p>
      {secret !== null && (
        <div className="secret-row">
          <label htmlFor="signing-secret" className="visually-hidden">
            Signing secret
          </label>
          <input
            id="signing-secret"
            ref={field}
            className="mono"
            value={secret}
            readOnly
            spellCheck={false}
            autoComplete="off"
            aria-describedby="signing-hint"
            onFocus={(event) => event.target.select()}
          />
          <button type="button" className="secondary" onClick={() => void copy()}>
            Copy
          </button>
        </div>
      )}
      <div className="actions">
        {secret === null ? (
          <button type="button" className="secondary" onClick={() => void call(false)} disabled={busy}>
            Show signing secret
          </button>
        ) : (
          <button
            type="button"
            className="secondary"
            onClick={() => {
              setSecret(null);
              setStatus(null);
            }}
          >
            Hide signing secret
          </button>
        )}
        <button type="button" className="ghost" onClick={() => setConfirming(true)} disabled={busy || confirming}>
          Rotate signing secret
        </button>
      </div>
      {confirming && (
        <div className="banner warn" role="alertdialog" aria-labelledby="rotate-title" aria-describedby="rotate-text">
          <p id="rotate-title">
            <strong>Rotate the signing secret?</strong>
          </p>
          <p id="rotate-text">
            Every GET sent from then on — retries of earlier deliveries included — is signed with the new secret, while
            GETs already on their way may still carry the old one: add the new secret to your tracker next to the old
            one, accept either for a while (an hour is plenty), then remove the old one.
          </p>
          <div className="actions">
            <button type="button" className="danger" onClick={() => void call(true)} disabled={busy} autoFocus>
              Yes, rotate
            </button>
            <button type="button" className="ghost" onClick={() => setConfirming(false)}>
              Keep the current secret
            </button>
          </div>
        </div>
      )}
      <div aria-live="polite">
        {error && (
          <p className="banner error" role="alert">
            {error}
          </p>
        )}
        {status && (
          <p className="hint" role="status">
            {status}
          </p>
        )}
      </div>
    </section>
  );
}
