import { useRef, useState, type FormEvent } from "react";
import {
  ApiError,
  unwrap,
  type Api,
  type ConversionStatus,
  type Parameter,
  type Postback,
  type PostbackCreate,
  type PostbackPatch,
} from "./api/client";
import type { Identity } from "./auth";
import { signatureProblem } from "./format";
import { TagInput } from "./TagInput";

type Scope = "global" | "offer";
// The API's field names, and the form field each one's errors belong to.
const FIELD_OF: Record<string, string> = {
  affiliate_id: "source",
  scope: "scope",
  included_offer_ids: "offers",
  excluded_offer_ids: "offers",
  conversion_types: "types",
  conversion_statuses: "statuses",
  url: "url",
  enabled: "enabled",
  delay_seconds: "delay",
};
const MAX_DELAY_SECONDS = 900;

export function PostbackForm({
  api,
  identity,
  parameters,
  statuses,
  existing,
  onSaved,
  onCancel,
  onUnauthorized,
}: {
  api: Api;
  identity: Identity;
  parameters: Parameter[];
  statuses: string[];
  existing?: Postback;
  onSaved: (postback: Postback) => void;
  onCancel: () => void;
  onUnauthorized: (error: unknown) => boolean;
}) {
  const isAdmin = identity.role === "admin";
  const [current, setCurrent] = useState<Postback | undefined>(existing);
  const [source, setSource] = useState(existing?.affiliate_id ?? "");
  const [scope, setScope] = useState<Scope>(existing?.scope ?? "global");
  const [offers, setOffers] = useState<string[]>(
    existing ? (existing.scope === "offer" ? existing.included_offer_ids : existing.excluded_offer_ids) : [],
  );
  const [offerText, setOfferText] = useState("");
  const [types, setTypes] = useState<string[]>(existing?.conversion_types ?? []);
  const [typeText, setTypeText] = useState("");
  const [chosen, setChosen] = useState<string[]>(existing?.conversion_statuses ?? []);
  const [url, setUrl] = useState(existing?.url ?? "");
  const [enabled, setEnabled] = useState(existing?.enabled ?? true);
  const [delay, setDelay] = useState(String(existing?.delay_seconds ?? 0));
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [formError, setFormError] = useState<string | null>(null);
  const [stale, setStale] = useState(false);
  const [saving, setSaving] = useState(false);
  const urlInput = useRef<HTMLInputElement>(null);

  const reset = (postback: Postback) => {
    setCurrent(postback);
    setScope(postback.scope);
    setOffers(postback.scope === "offer" ? postback.included_offer_ids : postback.excluded_offer_ids);
    setTypes(postback.conversion_types);
    setChosen(postback.conversion_statuses);
    setUrl(postback.url);
    setEnabled(postback.enabled);
    setDelay(String(postback.delay_seconds));
    setErrors({});
    setFormError(null);
    setStale(false);
  };

  const reload = async () => {
    if (!current) return;
    try {
      reset(await unwrap(api.GET("/postbacks/{id}", { params: { path: { id: current.id } } })));
    } catch (caught) {
      if (!onUnauthorized(caught)) setFormError(caught instanceof Error ? caught.message : String(caught));
    }
  };

  const insertPlaceholder = (name: string) => {
    const input = urlInput.current;
    const token = `{${name}}`;
    const start = input?.selectionStart ?? url.length;
    const end = input?.selectionEnd ?? url.length;
    const next = url.slice(0, start) + token + url.slice(end);
    setUrl(next);
    requestAnimationFrame(() => {
      if (!input) return;
      input.focus();
      input.setSelectionRange(start + token.length, start + token.length);
    });
  };

  const withPending = (values: string[], text: string) => {
    const extra = text
      .split(",")
      .map((part) => part.trim())
      .filter((part) => part && !values.includes(part));
    return [...values, ...extra];
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const allOffers = withPending(offers, offerText);
    const allTypes = withPending(types, typeText);
    setOffers(allOffers);
    setOfferText("");
    setTypes(allTypes);
    setTypeText("");
    const definition = {
      scope,
      included_offer_ids: scope === "offer" ? allOffers : [],
      excluded_offer_ids: scope === "global" ? allOffers : [],
      conversion_types: allTypes,
      conversion_statuses: chosen as ConversionStatus[],
      url: url.trim(),
      enabled,
      // Empty means the default, 0; anything else goes as typed and the API judges it.
      delay_seconds: delay.trim() === "" ? 0 : Number(delay),
    };
    setSaving(true);
    setErrors({});
    setFormError(null);
    setStale(false);
    try {
      let saved: Postback;
      if (current) {
        const body: PostbackPatch = definition;
        saved = await unwrap(
          api.PATCH("/postbacks/{id}", {
            params: { path: { id: current.id }, header: { "If-Match": `"${current.version}"` } },
            body,
          }),
        );
      } else {
        const owner = isAdmin ? source.trim() : (identity.affiliateId ?? "");
        const body: PostbackCreate = { ...definition, affiliate_id: owner };
        saved = await unwrap(api.POST("/postbacks", { body }));
      }
      onSaved(saved);
    } catch (caught) {
      if (onUnauthorized(caught)) return;
      if (caught instanceof ApiError && caught.status === 412) {
        setStale(true);
      } else if (caught instanceof ApiError && caught.status === 400 && caught.problem?.errors?.length) {
        const byField: Record<string, string> = {};
        const unplaced: string[] = [];
        for (const [field, message] of Object.entries(caught.fieldErrors())) {
          const target = FIELD_OF[field];
          if (target) byField[target] = byField[target] ? `${byField[target]}; ${message}` : message;
          else unplaced.push(`${field}: ${message}`);
        }
        setErrors(byField);
        setFormError(unplaced.length ? unplaced.join("; ") : "Some fields need attention.");
      } else {
        setFormError(caught instanceof Error ? caught.message : String(caught));
      }
    } finally {
      setSaving(false);
    }
  };

  const errorProps = (field: string) =>
    errors[field] ? { "aria-invalid": "true" as const, "aria-describedby": `error-${field}` } : {};
  // Before saving, a hint; once the API has said it at the field, its message is enough.
  const signatureHint = errors.url?.includes("{signature}") ? null : signatureProblem(url.trim());
  const urlDescription = ["url-hint", signatureHint ? "signature-hint" : "", errors.url ? "error-url" : ""]
    .filter(Boolean)
    .join(" ");
  const errorText = (field: string) =>
    errors[field] ? (
      <p id={`error-${field}`} className="field-error">
        {errors[field]}
      </p>
    ) : null;

  return (
    <form className="postback-form" onSubmit={(event) => void submit(event)} noValidate>
      {stale && (
        <div className="banner warn" role="alert">
          <p>
            <strong>This postback was changed elsewhere.</strong> Reload it to see the current version, then make your
            change again.
          </p>
          <button type="button" className="secondary" onClick={() => void reload()}>
            Reload
          </button>
        </div>
      )}
      {formError && (
        <p className="banner error" role="alert">
          {formError}
        </p>
      )}
      {isAdmin && (
        <div className="field">
          <label htmlFor="source">Source</label>
          <p className="hint" id="source-hint">
            The affiliate whose conversions fire it.
          </p>
          <input
            id="source"
            value={source}
            onChange={(event) => setSource(event.target.value)}
            disabled={Boolean(current)}
            aria-invalid={errors.source ? "true" : undefined}
            aria-describedby={errors.source ? "source-hint error-source" : "source-hint"}
            autoComplete="off"
          />
          {errorText("source")}
        </div>
      )}
      <fieldset className="field">
        <legend>Scope</legend>
        <div className="radios">
          {(["global", "offer"] as const).map((value) => (
            <label key={value} className="choice">
              <input
                type="radio"
                name="scope"
                value={value}
                checked={scope === value}
                onChange={() => setScope(value)}
                {...errorProps("scope")}
              />
              {value === "global" ? "Global" : "Offer"}
            </label>
          ))}
        </div>
        {errorText("scope")}
      </fieldset>
      <TagInput
        id="offers"
        label="Offers"
        hint={
          scope === "global"
            ? "Excluded offers: it fires for every other offer, including new ones."
            : "Included offers: it fires for these offers only."
        }
        values={offers}
        onChange={setOffers}
        pending={offerText}
        onPendingChange={setOfferText}
        invalid={Boolean(errors.offers)}
        describedBy={errors.offers ? "error-offers" : undefined}
      />
      {errorText("offers")}
      <TagInput
        id="types"
        label="Conversion types"
        hint="Codes such as sale, lead or free_trial."
        values={types}
        onChange={setTypes}
        pending={typeText}
        onPendingChange={setTypeText}
        invalid={Boolean(errors.types)}
        describedBy={errors.types ? "error-types" : undefined}
      />
      {errorText("types")}
      <fieldset className="field">
        <legend>Conversion statuses</legend>
        <div className="checks">
          {statuses.map((status) => (
            <label key={status} className="choice">
              <input
                type="checkbox"
                checked={chosen.includes(status)}
                onChange={(event) =>
                  setChosen(event.target.checked ? [...chosen, status] : chosen.filter((item) => item !== status))
                }
                {...errorProps("statuses")}
              />
              {status}
            </label>
          ))}
        </div>
        {errorText("statuses")}
      </fieldset>
      <div className="field">
        <label htmlFor="url">URL</label>
        <p className="hint" id="url-hint">
          Your tracker's address. Insert placeholders at the cursor; they are filled in for each conversion.
        </p>
        <input
          id="url"
          ref={urlInput}
          value={url}
          onChange={(event) => setUrl(event.target.value)}
          aria-invalid={errors.url ? "true" : undefined}
          aria-describedby={urlDescription}
          placeholder="https://tracker.example/cb?click={affS1}"
          spellCheck={false}
          autoComplete="off"
          className="mono"
        />
        {signatureHint && (
          <p id="signature-hint" className="hint warn-text">
            {signatureHint}
          </p>
        )}
        {errorText("url")}
        <div className="placeholders" role="group" aria-label="Placeholders">
          {parameters.map((parameter) => (
            <button
              key={parameter.name}
              type="button"
              className={`placeholder${parameter.restricted ? " restricted" : ""}`}
              title={`${parameter.label}: ${parameter.description}${
                parameter.restricted ? " Restricted: usable where the network allows it." : ""
              }`}
              aria-describedby={parameter.restricted ? "restricted-note" : undefined}
              onClick={() => insertPlaceholder(parameter.name)}
            >
              {`{${parameter.name}}`}
            </button>
          ))}
        </div>
        <p id="restricted-note" className="hint">
          <span className="restricted-mark" aria-hidden="true">
            ◆
          </span>{" "}
          Restricted placeholder: usable by admins, and by affiliates only where the network allows it.
        </p>
      </div>
      <div className="field">
        <label htmlFor="delay">Delay (seconds)</label>
        <p className="hint" id="delay-hint">
          The first attempt is sent no earlier than this after the match: 0 to {MAX_DELAY_SECONDS} seconds.
        </p>
        <input
          id="delay"
          type="number"
          inputMode="numeric"
          min={0}
          max={MAX_DELAY_SECONDS}
          step={1}
          value={delay}
          onChange={(event) => setDelay(event.target.value)}
          aria-invalid={errors.delay ? "true" : undefined}
          aria-describedby={errors.delay ? "delay-hint error-delay" : "delay-hint"}
          className="number"
        />
        {errorText("delay")}
      </div>
      <label className="choice">
        <input type="checkbox" checked={enabled} onChange={(event) => setEnabled(event.target.checked)} />
        Enabled
      </label>
      <div className="actions">
        <button type="submit" className="primary" disabled={saving}>
          {saving ? "Saving…" : "Save"}
        </button>
        <button type="button" className="ghost" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
