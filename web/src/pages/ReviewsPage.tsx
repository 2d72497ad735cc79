import { useCallback, useEffect, useId, useState } from "react";
import { ApiError } from "../api";
import { InputFields, fieldErrorsAt, initialDrafts, readDrafts, type Drafts, type FieldErrors } from "../components/InputForm";
import { StatusBadge } from "../components/Status";
import { may, useSession } from "../context";
import { when } from "../format";
import {
  ConsoleExecutionUpdatesDocument,
  ReviewUpdatesDocument,
  ReviewsDocument,
  SubmitReviewDocument,
  type ReviewsQuery,
} from "../gql/graphql";
import { href } from "../router";
import { explain } from "./ExecutionPage";

type Review = ReviewsQuery["reviews"][number];

const keyOf = (review: Review) => `${review.executionId}\u0000${review.stepKey}\u0000${review.attempt}`;

/** The review queue, live: subscribe to reviewUpdates, then read reviews(status: PENDING). */
export function ReviewsPage() {
  const { api, viewer } = useSession();
  const [reviews, setReviews] = useState<Review[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  const read = useCallback(() => {
    api.request(ReviewsDocument, { status: "PENDING", first: 200 }).then(
      (data) => setReviews(data.reviews),
      (caught: unknown) => setError(caught instanceof ApiError ? caught.message : String(caught)),
    );
  }, [api]);

  useEffect(
    () =>
      api.subscribe(ReviewUpdatesDocument, () => ({ status: "PENDING" as const }), {
        // Each (re)subscription reads the queue again, so nothing changed while away is missed.
        subscribed: () => read(),
        next: ({ reviewUpdates }) =>
          setReviews((current) => {
            // An update carries all of that execution's pending reviews: replace what we show.
            const others = (current ?? []).filter((review) => review.executionId !== reviewUpdates.executionId);
            return [...others, ...reviewUpdates.reviews].sort((a, b) => a.requestedAt.localeCompare(b.requestedAt));
          }),
        error: (caught) => setError(caught.message),
      }),
    [api, read],
  );

  // reviewUpdates tells a subscriber that an execution stopped waiting only if it saw it start
  // (the hub's watcher remembers what it showed), so reviews already pending when the page
  // subscribed would stay after someone decides them. Every status change says it too.
  useEffect(
    () =>
      api.subscribe(ConsoleExecutionUpdatesDocument, () => ({ filter: null }), {
        next: ({ executionUpdates }) => {
          if (executionUpdates.execution.status !== "WAITING") drop(executionUpdates.execution.id);
        },
      }),
    [api], // eslint-disable-line react-hooks/exhaustive-deps
  );

  const drop = (executionId: string) =>
    setReviews((current) => {
      if (current === null || !current.some((review) => review.executionId === executionId)) return current;
      return current.filter((review) => review.executionId !== executionId);
    });

  return (
    <section aria-labelledby="reviews-title" className="reviews" data-pending={reviews?.length ?? ""}>
      <h1 id="reviews-title">Review queue</h1>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {reviews === null ? (
        !error && <p aria-busy="true">Loading…</p>
      ) : reviews.length === 0 ? (
        <p className="muted">Nothing waits for a review.</p>
      ) : (
        <ol className="review-list">
          {reviews.map((review) => (
            <li key={keyOf(review)}>
              <ReviewCard review={review} canDecide={may(viewer, "review:write")} onDecided={() => drop(review.executionId)} />
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}

function ReviewCard({ review, canDecide, onDecided }: { review: Review; canDecide: boolean; onDecided: () => void }) {
  const { api } = useSession();
  const [drafts, setDrafts] = useState<Drafts>(() => initialDrafts(review.form));
  const [errors, setErrors] = useState<FieldErrors>({});
  // An edited field's error no longer applies; the others' still do.
  const edit = (next: Drafts, changed: string) => {
    setDrafts(next);
    setErrors(({ [changed]: _, ...rest }) => rest);
  };
  const [comment, setComment] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const [sending, setSending] = useState(false);
  const id = useId();

  function decide(decision: string) {
    const read = readDrafts(review.form, drafts);
    setErrors(read.errors);
    const wrong = Object.entries(read.errors);
    if (wrong.length > 0) {
      setProblem(`Not sent — ${wrong.map(([field, message]) => `${field}: ${message}`).join("; ")}.`);
      return;
    }
    setProblem(null);
    setSending(true);
    api
      .request(SubmitReviewDocument, {
        executionId: review.executionId,
        stepKey: review.stepKey,
        decision,
        values: review.form.length ? read.values : null,
        comment: comment.trim() || null,
      })
      .then(
        ({ submitReview: outcome }) => {
          if (outcome.__typename === "SubmitReviewSuccess") {
            onDecided();
          } else {
            setErrors(fieldErrorsAt("values", outcome.__typename === "ValidationError" ? outcome.fieldErrors : undefined));
            setProblem(`The server refused the decision: ${explain(outcome)}`);
          }
        },
        (caught: unknown) => setProblem(caught instanceof ApiError ? caught.message : String(caught)),
      )
      .finally(() => setSending(false));
  }

  const execution = review.execution;
  return (
    <article className="card review" aria-labelledby={`${id}-title`} data-review={`${review.executionId}/${review.stepKey}`}>
      <div className="title-row">
        <h2 id={`${id}-title`}>{review.title}</h2>
        {execution && <StatusBadge status={execution.status} />}
      </div>
      <p className="muted small">
        {execution ? <a href={href({ page: "execution", id: execution.id })}>{execution.name}</a> : review.executionId} · step{" "}
        <code>{review.stepKey}</code> · requested {when(review.requestedAt)}
        {review.expiresAt ? ` · on timeout (${when(review.expiresAt)}): ${review.onTimeout}` : " · waits until decided"}
      </p>
      {review.instructions && <p className="instructions">{review.instructions}</p>}
      {review.shownSteps.map((step) => (
        <details key={`${step.key}:${step.attempt}`} className="shown-step">
          <summary>
            Step <code>{step.key}</code> <StatusBadge status={step.status} />
          </summary>
          {step.error && <p className="error small">{step.error}</p>}
          {step.output !== null && <pre className="output">{typeof step.output === "string" ? step.output : JSON.stringify(step.output, null, 2)}</pre>}
          {step.artifacts.map((artifact) =>
            artifact.mediaType.startsWith("audio/") ? (
              <audio key={artifact.id} controls preload="none" src={artifact.url} aria-label={artifact.name} />
            ) : (
              <a key={artifact.id} href={artifact.url}>
                {artifact.name}
              </a>
            ),
          )}
        </details>
      ))}
      {canDecide ? (
        <form onSubmit={(event) => event.preventDefault()} noValidate aria-label={`Decide ${review.title}`}>
          {review.form.length > 0 && <InputFields specs={review.form} drafts={drafts} errors={errors} onChange={(next, changed) => edit(next, changed)} disabled={sending} />}
          <div className="field">
            <label htmlFor={`${id}-comment`}>Comment (optional)</label>
            <textarea id={`${id}-comment`} rows={2} value={comment} onChange={(event) => setComment(event.target.value)} />
          </div>
          {problem && (
            <p className="error" role="alert">
              {problem}
            </p>
          )}
          <div className="actions" role="group" aria-label="Decisions">
            {review.decisions.map((decision) => (
              <button
                key={decision}
                type="button"
                disabled={sending}
                className={review.failOn.includes(decision) ? "danger" : undefined}
                data-decision={decision}
                onClick={() => decide(decision)}
              >
                {decision}
              </button>
            ))}
          </div>
        </form>
      ) : (
        <p className="muted small">Your role may not decide reviews.</p>
      )}
    </article>
  );
}
