import { useCallback, useEffect, useRef, useState } from "react";
import { Api, ApiError } from "./api";
import { SessionContext, type Session } from "./context";
import { ViewerDocument } from "./gql/graphql";
import { ExecutionPage } from "./pages/ExecutionPage";
import { ExecutionsPage } from "./pages/ExecutionsPage";
import { SignIn } from "./pages/SignIn";
import { MetricsPage } from "./pages/MetricsPage";
import { ReviewsPage } from "./pages/ReviewsPage";
import { BatchPage, SuitePage, SuiteRunPage, SuitesPage } from "./pages/SuitesPages";
import { TestPanelPage } from "./pages/TestPanelPage";
import { href, useRoute } from "./router";
import { forgetToken, saveToken, savedToken } from "./session";

/** Check a token with the cheapest query there is (viewer): an answer in words, at once. */
export async function signIn(token: string): Promise<Session> {
  const api = new Api(token);
  try {
    const { viewer } = await api.request(ViewerDocument, {});
    return { api, viewer };
  } catch (error) {
    api.close();
    throw error;
  }
}

type State =
  | { phase: "checking" }
  | { phase: "signed-out"; notice: string | null }
  | { phase: "signed-in"; session: Session };

export function App() {
  const [state, setState] = useState<State>(() =>
    savedToken() === null ? { phase: "signed-out", notice: null } : { phase: "checking" },
  );

  const signOut = useCallback((notice: string | null) => {
    forgetToken();
    setState((current) => {
      if (current.phase === "signed-in") current.session.api.close();
      return { phase: "signed-out", notice };
    });
  }, []);

  const accept = useCallback(
    (session: Session) => {
      session.api.onUnauthenticated = (message) => signOut(message);
      setState({ phase: "signed-in", session });
    },
    [signOut],
  );

  useEffect(() => {
    if (state.phase !== "checking") return;
    const token = savedToken();
    if (token === null) return;
    signIn(token).then(accept, (error: unknown) => {
      forgetToken();
      const message = error instanceof ApiError ? error.message : String(error);
      setState({ phase: "signed-out", notice: message });
    });
  }, [state.phase, accept]);

  if (state.phase === "checking") {
    return (
      <main className="centered" aria-busy="true">
        <p>Checking your token…</p>
      </main>
    );
  }
  if (state.phase === "signed-out") {
    return (
      <SignIn
        notice={state.notice}
        onSignedIn={(session, token, remember) => {
          saveToken(token, remember);
          accept(session);
        }}
      />
    );
  }
  return (
    <SessionContext.Provider value={state.session}>
      <Shell session={state.session} onSignOut={() => signOut(null)} />
    </SessionContext.Provider>
  );
}

// The pages beyond the executions: [path, link text, the routes where the link is current].
const MORE_PAGES: [string, string, string[]][] = [
  ["test", "Test panel", ["test"]],
  ["suites", "Suites", ["suites", "suite", "suite-run", "batch"]],
  ["reviews", "Reviews", ["reviews"]],
  ["metrics", "Metrics", ["metrics"]],
];

function Shell({ session, onSignOut }: { session: Session; onSignOut: () => void }) {
  const route = useRoute();
  const [connected, setConnected] = useState<boolean | null>(null);
  useEffect(() => session.api.onConnection(setConnected), [session.api]);
  const { viewer } = session;
  // A new page (not a new filter on the same one) takes the focus to its content, so a screen
  // reader starts there and the keyboard does not stay on the link that led to it.
  const place = route.page === "execution" ? `execution:${route.id}` : route.page;
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    document.getElementById("content")?.focus({ preventScroll: false });
  }, [place]);
  return (
    <>
      <a className="skip-link" href="#content">
        Skip to content
      </a>
      <header className="topbar">
        <a className="brand" href={href({ page: "executions" })}>
          Runwire
        </a>
        <nav aria-label="Main">
          <a
            href={href({ page: "executions" })}
            aria-current={route.page === "executions" ? "page" : undefined}
          >
            Executions
          </a>
          {MORE_PAGES.map(([page, text, current]) => (
            <a key={page} href={`#/${page}`} aria-current={current.includes(route.page) ? "page" : undefined}>
              {text}
            </a>
          ))}
        </nav>
        <span className="spacer" />
        <span
          className={`connection ${connected === false ? "down" : "up"}`}
          role="status"
          data-connection={connected === null ? "idle" : connected ? "open" : "closed"}
        >
          {connected === false ? "Reconnecting…" : ""}
        </span>
        <span className="who" title={`token ${viewer.label}`}>
          {viewer.workspaceName} · {viewer.role.toLowerCase()}
        </span>
        <button type="button" className="secondary" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <main id="content" tabIndex={-1}>
        {route.page === "executions" && <ExecutionsPage query={route.query} />}
        {route.page === "execution" && <ExecutionPage key={route.id} id={route.id} />}
        {route.page === "test" && <TestPanelPage key={route.scenario ?? ""} scenario={route.scenario} />}
        {route.page === "suites" && <SuitesPage />}
        {route.page === "suite" && <SuitePage key={route.name} name={route.name} />}
        {route.page === "suite-run" && <SuiteRunPage key={route.id} id={route.id} query={route.query} />}
        {route.page === "batch" && <BatchPage key={route.id} id={route.id} />}
        {route.page === "reviews" && <ReviewsPage />}
        {route.page === "metrics" && <MetricsPage query={route.query} />}
        {route.page === "not-found" && (
          <section>
            <h1>Not found</h1>
            <p>
              There is no page at <code>{route.path}</code>.{" "}
              <a href={href({ page: "executions" })}>Go to executions</a>.
            </p>
          </section>
        )}
      </main>
    </>
  );
}
