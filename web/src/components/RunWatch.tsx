import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError } from "../api";
import { useSession } from "../context";
import { cost, duration } from "../format";
import { ConsolePanelRunDocument, FollowExecutionEventsDocument, type ConsolePanelRunQuery } from "../gql/graphql";
import { LogModel } from "../log";
import { href } from "../router";
import { LogView } from "./LogView";
import { StatusBadge } from "./Status";

type Run = NonNullable<ConsolePanelRunQuery["execution"]>;

/**
 * One execution watched in place: its status, each step's result (output or error) and the live
 * log, followed from the start and resumed from the last seq after a dropped socket.
 */
export function RunWatch({ id }: { id: string }) {
  const { api } = useSession();
  const [run, setRun] = useState<Run | null>(null);
  const [version, setVersion] = useState(0);
  const [ended, setEnded] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const log = useRef(new LogModel());
  const timer = useRef<number | undefined>(undefined);

  const reload = useCallback(() => {
    api.request(ConsolePanelRunDocument, { id }).then(
      (data) => setRun(data.execution),
      (caught: unknown) => setError(caught instanceof ApiError ? caught.message : String(caught)),
    );
  }, [api, id]);
  const reloadSoon = useCallback(() => {
    if (timer.current !== undefined) return;
    timer.current = window.setTimeout(() => {
      timer.current = undefined;
      reload();
    }, 150);
  }, [reload]);

  useEffect(() => {
    reload();
    const model = log.current;
    let frame = 0;
    const unsubscribe = api.subscribe(FollowExecutionEventsDocument, () => ({ executionId: id, afterSeq: model.lastSeq }), {
      next: ({ executionEvents }) => {
        const fresh = model.apply(executionEvents.events);
        if (fresh.some((e) => e.__typename === "StepStatusChanged" || e.__typename === "ExecutionStatusChanged")) {
          reloadSoon();
        }
        if (fresh.length > 0 && frame === 0) {
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
    });
    return () => {
      unsubscribe();
      window.cancelAnimationFrame(frame);
      window.clearTimeout(timer.current);
    };
  }, [api, id, reload, reloadSoon]);

  return (
    <section className="run-watch card" aria-labelledby={`run-${id}`} data-run={id} data-run-status={run?.status ?? "LOADING"}>
      <div className="title-row">
        <h3 id={`run-${id}`}>{run ? run.name : "Starting…"}</h3>
        {run && <StatusBadge status={run.status} />}
        <a className="small" href={href({ page: "execution", id })}>
          Open the execution page
        </a>
      </div>
      {run && (
        <p className="muted small">
          {run.mode === "FULL" ? "Full run" : run.mode === "STEP" ? `Single step ${run.stepKey}` : `Step ${run.stepKey} in context`}
          {" · "}
          {duration(run.durationMs)} · {cost(run.usage)}
        </p>
      )}
      {run?.error && <p className="error">{run.error}</p>}
      {run && run.steps.length > 0 && (
        <ol className="step-results" aria-label="Step results">
          {run.steps.map((step) => (
            <li key={`${step.key}:${step.attempt}`} data-step-result={step.key} data-step-status={step.status}>
              <span className="step-key">{step.key}</span> <StatusBadge status={step.status} />
              {step.exitCode !== null && <span className="muted small"> exit {step.exitCode}</span>}
              {step.error && <div className="error small">{step.error}</div>}
              {step.output !== null && step.output !== undefined && (
                <pre className="output" data-output={step.key}>
                  {typeof step.output === "string" ? step.output : JSON.stringify(step.output, null, 2)}
                </pre>
              )}
            </li>
          ))}
        </ol>
      )}
      <LogView log={log.current} version={version} live={!ended && run?.status === "RUNNING"} />
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}
