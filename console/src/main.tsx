// The console's shell: sign-in with an API key (kept for this tab only),
// the navigation, and a hash route per page so a link or a reload lands
// on the same page.

import "@xyflow/react/dist/style.css";
import "./style.css";
import { StrictMode, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { ApiError, gql, may, type KeyInfo } from "./api";
import { ApprovalsPage } from "./pages/Approvals";
import { AuditPage } from "./pages/Audit";
import { ExperimentsPage } from "./pages/Experiments";
import { FlowPage } from "./pages/Flow";
import { FlowsPage } from "./pages/Flows";
import { SupportPage } from "./pages/Support";
import { asApiError, ErrorBox, SessionContext, type Session } from "./ui";

const KEY_STORE = "baton.console.key";

export function useRoute(): [string[], URLSearchParams] {
  const read = () => window.location.hash.replace(/^#\/?/, "");
  const [hash, setHash] = useState(read);
  useEffect(() => {
    const on = () => setHash(read());
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  const [path, query = ""] = hash.split("?");
  return [path.split("/").filter(Boolean).map(decodeURIComponent), new URLSearchParams(query)];
}

function SignIn({ onSignedIn }: { onSignedIn: (s: Session) => void }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <main className="signin">
      <h1>Baton console</h1>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            const { apiKey } = await gql<{ apiKey: KeyInfo }>(
              { key },
              `{ apiKey { name role queues permissions } }`,
            );
            sessionStorage.setItem(KEY_STORE, key);
            onSignedIn({ key, info: apiKey });
          } catch (err) {
            setError(asApiError(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <label htmlFor="api-key">API key</label>
        <input
          id="api-key"
          type="password"
          autoComplete="off"
          value={key}
          onChange={(e) => setKey(e.target.value)}
          required
        />
        <button type="submit" disabled={busy || key === ""}>Sign in</button>
        <p className="muted">The key stays in this tab only and is forgotten when the tab closes.</p>
        <ErrorBox error={error} />
      </form>
    </main>
  );
}

const NAV: { path: string; label: string; permission: string }[] = [
  { path: "flows", label: "Flows", permission: "READ_FLOWS" },
  { path: "approvals", label: "Approvals", permission: "LIST_APPROVALS" },
  { path: "support", label: "Support", permission: "READ_SESSIONS" },
  { path: "experiments", label: "Experiments", permission: "READ_RESULTS" },
  { path: "audit", label: "Audit log", permission: "READ_AUDIT" },
];

function Shell({ session, onSignOut }: { session: Session; onSignOut: () => void }) {
  const [path, query] = useRoute();
  const allowed = NAV.filter((n) => may(session.info, n.permission));
  const page = path[0] ?? allowed[0]?.path ?? "flows";
  let body;
  if (page === "flows" && path[1]) body = <FlowPage flowId={path[1]} tab={path[2] ?? "graph"} />;
  else if (page === "flows") body = <FlowsPage />;
  else if (page === "approvals") body = <ApprovalsPage />;
  else if (page === "support") body = <SupportPage query={query} />;
  else if (page === "experiments") body = <ExperimentsPage />;
  else if (page === "audit") body = <AuditPage />;
  else body = <p>No page here. <a href="#/flows">Flows</a></p>;
  return (
    <SessionContext.Provider value={session}>
      <header className="top">
        <a className="brand" href="#/flows">Baton</a>
        <nav aria-label="Main">
          {NAV.map((n) =>
            may(session.info, n.permission) ? (
              <a key={n.path} href={`#/${n.path}`} aria-current={page === n.path ? "page" : undefined}>
                {n.label}
              </a>
            ) : null,
          )}
        </nav>
        <details className="who">
          <summary data-testid="who">
            {session.info.name} · {session.info.role.toLowerCase()}
          </summary>
          <p>This key may:</p>
          <ul data-testid="permissions">
            {session.info.permissions.map((p) => <li key={p}>{p}</li>)}
          </ul>
        </details>
        <button type="button" onClick={onSignOut}>Sign out</button>
      </header>
      <main>{body}</main>
    </SessionContext.Provider>
  );
}

function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [checking, setChecking] = useState(() => sessionStorage.getItem(KEY_STORE) !== null);
  useEffect(() => {
    const key = sessionStorage.getItem(KEY_STORE);
    if (!key) return;
    gql<{ apiKey: KeyInfo }>({ key }, `{ apiKey { name role queues permissions } }`)
      .then(({ apiKey }) => setSession({ key, info: apiKey }))
      .catch(() => sessionStorage.removeItem(KEY_STORE))
      .finally(() => setChecking(false));
  }, []);
  if (checking) return <p className="muted">Signing in…</p>;
  if (!session) return <SignIn onSignedIn={setSession} />;
  return (
    <Shell
      session={session}
      onSignOut={() => {
        sessionStorage.removeItem(KEY_STORE);
        setSession(null);
      }}
    />
  );
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
