import { useId, useState, type FormEvent } from "react";
import { ApiError } from "../api";
import { signIn } from "../App";
import type { Session } from "../context";

export function SignIn({
  notice,
  onSignedIn,
}: {
  notice: string | null;
  onSignedIn: (session: Session, token: string, remember: boolean) => void;
}) {
  const [token, setToken] = useState("");
  const [remember, setRemember] = useState(false);
  const [error, setError] = useState<string | null>(notice);
  const [busy, setBusy] = useState(false);
  const ids = { token: useId(), remember: useId(), error: useId(), help: useId() };

  async function submit(event: FormEvent) {
    event.preventDefault();
    const value = token.trim();
    if (!value) {
      setError("Enter an API token.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      onSignedIn(await signIn(value), value, remember);
    } catch (caught) {
      setError(
        caught instanceof ApiError
          ? caught.kind === "unauthenticated"
            ? "That token was refused: it is wrong, revoked or expired."
            : caught.message
          : String(caught),
      );
      setBusy(false);
    }
  }

  return (
    <main className="centered">
      <form className="card sign-in" onSubmit={submit} aria-describedby={ids.help} noValidate>
        <h1>Sign in to Runwire</h1>
        <p id={ids.help} className="muted">
          Use an API token. The first start of the server prints one and writes it to{" "}
          <code>data/admin-token</code>; <code>runwire token create</code> makes more.
        </p>
        <label htmlFor={ids.token}>API token</label>
        <input
          id={ids.token}
          name="token"
          type="password"
          autoComplete="current-password"
          spellCheck={false}
          value={token}
          onChange={(event) => setToken(event.target.value)}
          aria-invalid={error !== null}
          aria-describedby={error ? ids.error : undefined}
          autoFocus
        />
        <div className="check">
          <input
            id={ids.remember}
            type="checkbox"
            checked={remember}
            onChange={(event) => setRemember(event.target.checked)}
          />
          <label htmlFor={ids.remember}>Remember on this device</label>
        </div>
        <p className="muted small">
          Without it the token is kept for this tab only and forgotten when the tab closes.
        </p>
        {error && (
          <p id={ids.error} className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? "Checking…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
