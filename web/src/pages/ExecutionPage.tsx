import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError } from "../api";
import { Confirm } from "../components/Confirm";
import { LogView } from "../components/LogView";
import { StatusBadge } from "../components/Status";
import { may, useSession } from "../context";
import { cost, duration, elapsed, tokens, useNow, when } from "../format";
import {
  ConsoleExecutionDocument,
  FollowExecutionEventsDocument,
  PauseExecutionDocument,
  ResumeExecutionDocument,
  RetryStepDocument,
  SkipStepDocument,
  StopExecutionDocument,
  type ConsoleExecutionQuery,
} from "../gql/graphql";
import { LogModel } from "../log";
import { Trace } from "../components/Trace";

type Execution = NonNullable<ConsoleExecutionQuery["execution"]>;
type Usage = Execution["usage"];
type Outcome = {
  __typename?: string;
  message?: string;
  fieldErrors?: { path: string; message: string }[];
  permission?: string;
  role?: string;
};
type Action = { title: string; body: string; verb: string; run: () => Promise<Outcome> };

const ENDED = new Set(["SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"]);

/** A mutation's typed error, in words. */
export function explain(outcome: Outcome): string | null {
  if (outcome.__typename?.endsWith("Success")) return null;
  if (outcome.__typename === "PermissionDeniedError") {
    return `Your role (${outcome.role?.toLowerCase()}) may not do this: it needs ${outcome.permission}.`;
  }
  const fields = outcome.fieldErrors?.map((f) => `${f.path}: ${f.message}`).join("; ");
  return [outcome.message ?? "The server refused.", fields].filter(Boolean).join(" — ");
}

export function ExecutionPage({ id }: { id: string }) {
  const { api, viewer } = useSession();
  const [execution, setExecution] = useState<Execution | null | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [usage, setUsage] = useState<Usage | null>(null);
  const [version, setVersion] = useState(0);
  const [ended, setEnded] = useState(false);
  const [pending, setPending] = useState<Action | null>(null);
  const [result, setResult] = useState<{ ok: boolean; text: string } | null>(null);
  const [traceVersion, setTraceVersion] = useState(0);
  // Bumped when a retry or resume revives an ended execution: follow it again from the last seq.
  const [generation, setGeneration] = useState(0);
  const log = useRef(new LogModel());
  const refresh = useRef<number | undefined>(undefined);
  const canWrite = may(viewer, "execution:write");

  const reload = useCallback(() => {
    api.request(ConsoleExecutionDocument, { id }).then(
      (data) => {
        setExecution(data.execution);
        if (data.execution) setUsage(data.execution.usage);
      },
      (caught: unknown) => setError(caught instanceof ApiError ? caught.message : String(caught)),
    );
  }, [api, id]);

  // Step and status changes re-read the execution, at most a few times a second.
  const reloadSoon = useCallback(() => {
    if (refresh.current !== undefined) return;
    refresh.current = window.setTimeout(() => {
      refresh.current = undefined;
      reload();
      setTraceVersion((n) => n + 1);
    }, 150);
  }, [reload]);

  useEffect(() => {
    reload();
  }, [reload]);

  useEffect(() => {
    // Follow from the start (a late join shows everything so far), and after a dropped socket
    // resume from the last seq shown: the model drops anything at or below it.
    const model = log.current;
    let frame = 0;
    const unsubscribe = api.subscribe(
      FollowExecutionEventsDocument,
      () => ({ executionId: id, afterSeq: model.lastSeq }),
      {
        next: ({ executionEvents }) => {
          const fresh = model.apply(executionEvents.events);
          if (fresh.length === 0) return;
          let structural = false;
          for (const event of fresh) {
            if (event.__typename === "UsageReported") setUsage(event.executionTotals);
            if (event.__typename === "StepStatusChanged" || event.__typename === "ExecutionStatusChanged") {
              structural = true;
            }
          }
          if (structural) reloadSoon();
          // One render per animation frame however fast events come.
          if (frame === 0) {
            frame = window.requestAnimationFrame(() => {
              frame = 0;
              setVersion((n) => n + 1);
            });
          }
        },
        complete: () => {
          setEnded(true);
          reloadSoon();
        },
        error: (caught) => setError(caught.message),
      },
    );
    return () => {
      unsubscribe();
      window.cancelAnimationFrame(frame);
    };
  }, [api, id, reloadSoon, generation]);

  useEffect(
    () => () => {
      window.clearTimeout(refresh.current);
      refresh.current = undefined;
    },
    [],
  );

  const live = execution?.status === "RUNNING";
  const now = useNow(!!execution && !ENDED.has(execution.status));

  if (execution === undefined) {
    return error ? (
      <p className="error" role="alert">
        {error}
      </p>
    ) : (
      <p aria-busy="true">Loading…</p>
    );
  }
  if (execution === null) {
    return (
      <section>
        <h1>Execution not found</h1>
        <p>This workspace has no execution {id}.</p>
      </section>
    );
  }

  const ask = (action: Action) => {
    setResult(null);
    setPending(action);
  };
  const mutate = (title: string, body: string, verb: string, run: () => Promise<Outcome>) =>
    ask({ title, body, verb, run });

  const status = execution.status;
  const active = !ENDED.has(status);
  const shownUsage = usage ?? execution.usage;

  return (
    <section aria-labelledby="execution-title" className="execution" data-execution-status={status}>
      <p>
        <a href="#/executions">← Executions</a>
      </p>
      <div className="title-row">
        <h1 id="execution-title">{execution.name}</h1>
        <StatusBadge status={status} />
      </div>
      {execution.error && <p className="error">{execution.error}</p>}
      <div className="toolbar" role="group" aria-label="Execution controls">
        {canWrite && active && (
          <button
            type="button"
            className="danger"
            onClick={() =>
              mutate("Stop this execution?", "Its running steps are interrupted; it ends as cancelled.", "Stop", async () =>
                (await api.request(StopExecutionDocument, { id, reason: "stopped from the console" })).stopExecution,
              )
            }
          >
            Stop
          </button>
        )}
        {canWrite && (status === "RUNNING" || status === "QUEUED") && (
          <button
            type="button"
            className="secondary"
            onClick={() =>
              mutate("Pause this execution?", "Running steps finish; no new step starts until it is resumed.", "Pause", async () =>
                (await api.request(PauseExecutionDocument, { id, reason: "paused from the console" })).pauseExecution,
              )
            }
          >
            Pause
          </button>
        )}
        {canWrite && (status === "PAUSED" || status === "PAUSING") && (
          <button
            type="button"
            className="secondary"
            onClick={() =>
              mutate("Resume this execution?", "It continues where it stopped.", "Resume", async () =>
                (await api.request(ResumeExecutionDocument, { id })).resumeExecution,
              )
            }
          >
            Resume
          </button>
        )}
      </div>
      {result && (
        <p className={result.ok ? "notice" : "error"} role={result.ok ? "status" : "alert"} data-result={result.ok ? "ok" : "error"}>
          {result.text}
        </p>
      )}

      <dl className="meta">
        <div>
          <dt>Scenario</dt>
          <dd>{execution.scenario ? `${execution.scenario.name} v${execution.scenario.version}` : "inline definition"}</dd>
        </div>
        <div>
          <dt>Mode</dt>
          <dd>{execution.mode.toLowerCase().replace(/_/g, " ")}{execution.stepKey ? ` (${execution.stepKey})` : ""}</dd>
        </div>
        <div>
          <dt>Queued</dt>
          <dd>{when(execution.queuedAt)}</dd>
        </div>
        <div>
          <dt>Duration</dt>
          <dd data-duration>{duration(elapsed(execution.startedAt, execution.finishedAt, execution.durationMs, now))}</dd>
        </div>
        <div>
          <dt>Cost</dt>
          <dd data-cost>{cost(shownUsage)}</dd>
        </div>
        <div>
          <dt>Tokens</dt>
          <dd data-tokens>
            {shownUsage.calls === 0 ? "—" : `${tokens(shownUsage.tokensInput)} in · ${tokens(shownUsage.tokensOutput)} out`}
          </dd>
        </div>
        <div>
          <dt>Started by</dt>
          <dd>{execution.triggeredBy}</dd>
        </div>
        <div>
          <dt>Labels</dt>
          <dd>{execution.labels.length ? execution.labels.join(", ") : "—"}</dd>
        </div>
        <div className="wide">
          <dt>Inputs</dt>
          <dd>
            <code>{JSON.stringify(execution.inputs)}</code>
          </dd>
        </div>
        <div className="wide">
          <dt>Id</dt>
          <dd>
            <code>{execution.id}</code>
          </dd>
        </div>
      </dl>

      <h2>Steps</h2>
      <div className="table-wrap">
        <table className="steps">
          <thead>
            <tr>
              <th scope="col">Step</th>
              <th scope="col">Status</th>
              <th scope="col">Attempt</th>
              <th scope="col">Duration</th>
              <th scope="col">Exit</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {execution.steps.map((step) => (
              <tr key={`${step.key}:${step.attempt}`} data-step={step.key} data-step-status={step.status}>
                <th scope="row">
                  {step.key} <span className="muted small">{step.kind}</span>
                  {step.error && <div className="error small">{step.error}</div>}
                  {step.artifacts.map((artifact) => (
                    <div key={artifact.id} className="small">
                      {artifact.mediaType.startsWith("audio/") ? (
                        <audio controls preload="none" src={artifact.url} aria-label={artifact.name} />
                      ) : (
                        <a href={artifact.url}>{artifact.name}</a>
                      )}
                    </div>
                  ))}
                </th>
                <td>
                  <StatusBadge status={step.status} live={false} />
                </td>
                <td>{step.attempt}</td>
                <td>{duration(elapsed(step.startedAt, step.finishedAt, step.durationMs, now))}</td>
                <td>{step.exitCode ?? "—"}</td>
                <td className="row-actions">
                  {canWrite && ["FAILED", "CANCELLED", "TIMED_OUT", "SUCCEEDED"].includes(step.status) && (
                    <button
                      type="button"
                      className="secondary small-button"
                      aria-label={`Retry step ${step.key}`}
                      onClick={() =>
                        mutate(`Retry step ${step.key}?`, "It runs again as a new attempt, then every later step that has not succeeded.", "Retry", async () =>
                          (await api.request(RetryStepDocument, { executionId: id, stepKey: step.key })).retryStep,
                        )
                      }
                    >
                      Retry
                    </button>
                  )}
                  {canWrite && ["FAILED", "PENDING"].includes(step.status) && (
                    <button
                      type="button"
                      className="secondary small-button"
                      aria-label={`Skip step ${step.key}`}
                      onClick={() =>
                        mutate(`Skip step ${step.key}?`, "It is marked skipped and the execution continues after it.", "Skip", async () =>
                          (await api.request(SkipStepDocument, { executionId: id, stepKey: step.key })).skipStep,
                        )
                      }
                    >
                      Skip
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>

      <h2>Log</h2>
      <LogView log={log.current} version={version} live={!ended && live} />
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}

      <Trace id={id} version={traceVersion} />

      {pending && (
        <Confirm
          title={pending.title}
          body={pending.body}
          action={pending.verb}
          onCancel={() => setPending(null)}
          onConfirm={() => {
            const action = pending;
            setPending(null);
            action.run().then(
              (outcome) => {
                const problem = explain(outcome);
                setResult(problem ? { ok: false, text: problem } : { ok: true, text: `${action.verb}: done.` });
                if (!problem) {
                  // A retry or resume can revive an ended execution: follow it again from the
                  // last seq shown (a follow still open just starts over from there).
                  setEnded(false);
                  setGeneration((n) => n + 1);
                  reloadSoon();
                }
              },
              (caught: unknown) => setResult({ ok: false, text: caught instanceof ApiError ? caught.message : String(caught) }),
            );
          }}
        />
      )}
    </section>
  );
}
