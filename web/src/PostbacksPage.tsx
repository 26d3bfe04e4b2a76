import { useCallback, useEffect, useState, type FormEvent } from "react";
import { ApiError, unwrap, type Api, type Parameter, type Postback } from "./api/client";
import type { Identity } from "./auth";
import { formatTime, healthOf, scopeText } from "./format";
import { PostbackDetails } from "./PostbackDetails";
import { PostbackForm } from "./PostbackForm";
import { SidePanel } from "./SidePanel";

type Panel = { kind: "create" } | { kind: "details"; id: string } | { kind: "edit"; postback: Postback } | null;
type Filters = { affiliate: string; offer: string };
const PAGE_SIZE = 20;

export function PostbacksPage({
  api,
  identity,
  onSignOut,
}: {
  api: Api;
  identity: Identity;
  onSignOut: (reason?: string) => void;
}) {
  const isAdmin = identity.role === "admin";
  const [items, setItems] = useState<Postback[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [state, setState] = useState<"loading" | "ready" | "error">("loading");
  const [error, setError] = useState<string | null>(null);
  const [loadingMore, setLoadingMore] = useState(false);
  const [filters, setFilters] = useState<Filters>({ affiliate: "", offer: "" });
  const [draftFilters, setDraftFilters] = useState<Filters>({ affiliate: "", offer: "" });
  const [panel, setPanel] = useState<Panel>(null);
  const [parameters, setParameters] = useState<Parameter[]>([]);
  const [statuses, setStatuses] = useState<string[]>([]);
  const [notice, setNotice] = useState<string | null>(null);

  const handleAuth = useCallback(
    (caught: unknown) => {
      if (caught instanceof ApiError && caught.status === 401) {
        onSignOut(`Signed out: ${caught.message} Paste a new token.`);
        return true;
      }
      return false;
    },
    [onSignOut],
  );

  const query = useCallback(
    (after: string | null) => ({
      params: {
        query: {
          limit: PAGE_SIZE,
          ...(filters.affiliate ? { affiliate_id: filters.affiliate } : {}),
          ...(filters.offer ? { offer_id: filters.offer } : {}),
          ...(after ? { cursor: after } : {}),
        },
      },
    }),
    [filters],
  );

  const load = useCallback(async () => {
    setState("loading");
    setError(null);
    try {
      const page = await unwrap(api.GET("/postbacks", query(null)));
      setItems(page.items);
      setCursor(page.next_cursor);
      setState("ready");
    } catch (caught) {
      if (handleAuth(caught)) return;
      setError(caught instanceof Error ? caught.message : String(caught));
      setState("error");
    }
  }, [api, query, handleAuth]);

  const loadMore = async () => {
    if (!cursor) return;
    setLoadingMore(true);
    try {
      const page = await unwrap(api.GET("/postbacks", query(cursor)));
      setItems((current) => [...current, ...page.items]);
      setCursor(page.next_cursor);
    } catch (caught) {
      if (!handleAuth(caught)) setError(caught instanceof Error ? caught.message : String(caught));
    } finally {
      setLoadingMore(false);
    }
  };

  useEffect(() => {
    void load();
  }, [load]);

  useEffect(() => {
    unwrap(api.GET("/parameters"))
      .then((catalogue) => {
        setParameters(catalogue.parameters);
        setStatuses(catalogue.conversion_statuses);
      })
      .catch((caught) => {
        if (!handleAuth(caught)) setError(caught instanceof Error ? caught.message : String(caught));
      });
  }, [api, handleAuth]);

  const applyFilters = (event: FormEvent) => {
    event.preventDefault();
    setFilters({ affiliate: draftFilters.affiliate.trim(), offer: draftFilters.offer.trim() });
  };

  const saved = (postback: Postback, created: boolean) => {
    setItems((current) =>
      created ? [postback, ...current] : current.map((item) => (item.id === postback.id ? postback : item)),
    );
    setNotice(created ? "Postback created." : "Postback saved.");
    setPanel({ kind: "details", id: postback.id });
  };

  const deleted = (id: string) => {
    setItems((current) => current.filter((item) => item.id !== id));
    setNotice("Postback deleted.");
    setPanel(null);
  };

  const panelTitle =
    panel?.kind === "create" ? "New postback" : panel?.kind === "edit" ? "Edit postback" : "Postback details";

  return (
    <div className="app">
      <header className="topbar">
        <div className="brand">
          <span className="logo" aria-hidden="true">
            ⇢
          </span>
          Postbacks
        </div>
        <div className="who">
          <span className="muted">
            {isAdmin ? "Network admin" : `Affiliate ${identity.affiliateId ?? ""}`}
            {identity.subject ? ` · ${identity.subject}` : ""}
          </span>
          <button type="button" className="ghost" onClick={() => onSignOut()}>
            Sign out
          </button>
        </div>
      </header>
      <main className="content">
        <div className="page-head">
          <div>
            <h1>Postbacks</h1>
            <p className="muted">
              A postback sends a GET to your tracker when a conversion reaches one of its statuses.
            </p>
          </div>
          <button type="button" className="primary" onClick={() => setPanel({ kind: "create" })}>
            Create new postback
          </button>
        </div>
        <p className="notice" role="status" aria-live="polite">
          {notice}
        </p>
        {isAdmin && (
          <form className="filters" onSubmit={applyFilters} aria-label="Filters">
            <div className="field inline">
              <label htmlFor="filter-affiliate">Affiliate</label>
              <input
                id="filter-affiliate"
                value={draftFilters.affiliate}
                onChange={(event) => setDraftFilters({ ...draftFilters, affiliate: event.target.value })}
                placeholder="All affiliates"
              />
            </div>
            <div className="field inline">
              <label htmlFor="filter-offer">Offer</label>
              <input
                id="filter-offer"
                value={draftFilters.offer}
                onChange={(event) => setDraftFilters({ ...draftFilters, offer: event.target.value })}
                placeholder="All offers"
              />
            </div>
            <button type="submit" className="secondary">
              Apply filters
            </button>
          </form>
        )}
        <section className="card list-card" aria-labelledby="list-title" aria-busy={state === "loading"}>
          <h2 id="list-title" className="visually-hidden">
            Your postbacks
          </h2>
          {state === "loading" && (
            <p className="state" role="status">
              Loading postbacks…
            </p>
          )}
          {state === "error" && (
            <div className="state error" role="alert">
              <p>Could not load the postbacks: {error}</p>
              <button type="button" className="secondary" onClick={() => void load()}>
                Retry
              </button>
            </div>
          )}
          {state === "ready" && items.length === 0 && (
            <div className="state empty">
              <p>
                <strong>No postbacks yet.</strong>
              </p>
              <p className="muted">Create one to tell your tracker about conversions.</p>
            </div>
          )}
          {state === "ready" && items.length > 0 && (
            <table className="list">
              <thead>
                <tr>
                  <th scope="col">Source</th>
                  <th scope="col">Scope</th>
                  <th scope="col">Conversion types</th>
                  <th scope="col">Conversion statuses</th>
                  <th scope="col">URL</th>
                  <th scope="col">Health</th>
                  <th scope="col">Changed by</th>
                </tr>
              </thead>
              <tbody>
                {items.map((postback) => {
                  const health = healthOf(postback);
                  return (
                    <tr key={postback.id} className={panel && "id" in panel && panel.id === postback.id ? "selected" : ""}>
                      <td>{postback.affiliate_id}</td>
                      <td>{scopeText(postback)}</td>
                      <td>
                        <Chips values={postback.conversion_types} />
                      </td>
                      <td>
                        <Chips values={postback.conversion_statuses} />
                      </td>
                      <td className="url-cell">
                        <button
                          type="button"
                          className="link"
                          onClick={() => setPanel({ kind: "details", id: postback.id })}
                          aria-label={`Open postback ${postback.url}`}
                        >
                          <code>{postback.url}</code>
                        </button>
                      </td>
                      <td>
                        <span className={`badge ${health.tone}`} title={health.detail}>
                          {health.label}
                        </span>
                        {postback.host_paused_until && (
                          <span className="badge warn paused">
                            Host paused until {formatTime(postback.host_paused_until)}
                          </span>
                        )}
                      </td>
                      <td className="people">
                        <div>created by {postback.created_by ?? "—"}</div>
                        {postback.version > 1 && (
                          <div className="muted">updated by {postback.updated_by ?? "—"}</div>
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          )}
          {state === "ready" && cursor && (
            <div className="more">
              <button type="button" className="secondary" onClick={() => void loadMore()} disabled={loadingMore}>
                {loadingMore ? "Loading…" : "Load more"}
              </button>
            </div>
          )}
        </section>
      </main>
      {panel && (
        <SidePanel title={panelTitle} onClose={() => setPanel(null)}>
          {panel.kind === "create" && (
            <PostbackForm
              api={api}
              identity={identity}
              parameters={parameters}
              statuses={statuses}
              onSaved={(postback) => saved(postback, true)}
              onCancel={() => setPanel(null)}
              onUnauthorized={handleAuth}
            />
          )}
          {panel.kind === "edit" && (
            <PostbackForm
              api={api}
              identity={identity}
              parameters={parameters}
              statuses={statuses}
              existing={panel.postback}
              onSaved={(postback) => saved(postback, false)}
              onCancel={() => setPanel({ kind: "details", id: panel.postback.id })}
              onUnauthorized={handleAuth}
            />
          )}
          {panel.kind === "details" && (
            <PostbackDetails
              key={panel.id}
              api={api}
              id={panel.id}
              isAdmin={isAdmin}
              onEdit={(postback) => setPanel({ kind: "edit", postback })}
              onDeleted={deleted}
              onUnauthorized={handleAuth}
            />
          )}
        </SidePanel>
      )}
    </div>
  );
}

export function Chips({ values }: { values: readonly string[] }) {
  return (
    <ul className="chips">
      {values.map((value) => (
        <li key={value} className="chip">
          {value}
        </li>
      ))}
    </ul>
  );
}
