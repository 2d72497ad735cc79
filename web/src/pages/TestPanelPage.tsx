import { useCallback, useEffect, useId, useMemo, useState, type FormEvent } from "react";
import { ApiError } from "../api";
import { InputFields, draftOf, fieldErrorsAt, initialDrafts, readDrafts, type Drafts, type FieldErrors } from "../components/InputForm";
import { RunWatch } from "../components/RunWatch";
import { StatusBadge } from "../components/Status";
import { may, useSession } from "../context";
import { duration, when } from "../format";
import {
  ConsoleExecutionUpdatesDocument,
  ConsolePanelRecentDocument,
  ConsolePanelScenarioDocument,
  ListScenariosDocument,
  StartExecutionDocument,
  type ConsolePanelRecentQuery,
  type ConsolePanelScenarioQuery,
  type ExecutionMode,
} from "../gql/graphql";
import { href } from "../router";
import { explain } from "./ExecutionPage";

type Scenario = NonNullable<ConsolePanelScenarioQuery["scenario"]>;
type Recent = ConsolePanelRecentQuery["executions"]["edges"][number]["node"];
type Step = { key: string; needs: string[] };

const MODES: { mode: ExecutionMode; label: string; help: string }[] = [
  { mode: "FULL", label: "Full", help: "Every step, as a real run would." },
  { mode: "STEP", label: "Single step", help: "Only the chosen step, without what comes before it." },
  {
    mode: "STEP_IN_CONTEXT",
    label: "Step in context",
    help: "Only the chosen step, reading simulated outputs of the steps it needs.",
  },
];
const RECENT = 10;

/** The definition's steps and what each needs (a step without `needs` needs the one before it). */
export function stepsOf(definition: unknown): Step[] {
  const raw = (definition as { steps?: unknown } | null)?.steps;
  if (!Array.isArray(raw)) return [];
  const steps: Step[] = [];
  raw.forEach((item: { key?: unknown; needs?: unknown }, index) => {
    if (typeof item?.key !== "string") return;
    const needs = Array.isArray(item.needs)
      ? item.needs.filter((need): need is string => typeof need === "string")
      : index > 0 && typeof raw[index - 1]?.key === "string"
        ? [raw[index - 1].key as string]
        : [];
    steps.push({ key: item.key, needs });
  });
  return steps;
}

/** The test panel: pick a scenario, fill in the form made from its inputs, run it, watch it here. */
export function TestPanelPage({ scenario: chosen }: { scenario: string | null }) {
  const { api, viewer } = useSession();
  const [names, setNames] = useState<{ name: string; description: string }[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const id = useId();

  useEffect(() => {
    api.request(ListScenariosDocument, {}).then(
      (data) => setNames(data.scenarios.map((s) => ({ name: s.name, description: s.description }))),
      (caught: unknown) => setError(caught instanceof ApiError ? caught.message : String(caught)),
    );
  }, [api]);

  return (
    <section aria-labelledby="panel-title" className="test-panel">
      <h1 id="panel-title">Test panel</h1>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className="field scenario-pick">
        <label htmlFor={`${id}-scenario`}>Scenario</label>
        <select
          id={`${id}-scenario`}
          name="scenario"
          value={chosen ?? ""}
          onChange={(event) => {
            window.location.hash = event.target.value ? `#/test/${encodeURIComponent(event.target.value)}` : "#/test";
          }}
        >
          <option value="">Choose a scenario…</option>
          {(names ?? []).map((s) => (
            <option key={s.name} value={s.name}>
              {s.name}
            </option>
          ))}
        </select>
      </div>
      {names !== null && names.length === 0 && (
        <p className="muted">This workspace has no saved scenarios yet: save one with createScenario.</p>
      )}
      {chosen && <ScenarioPanel key={chosen} name={chosen} canRun={may(viewer, "execution:write")} />}
    </section>
  );
}

function ScenarioPanel({ name, canRun }: { name: string; canRun: boolean }) {
  const { api } = useSession();
  const [scenario, setScenario] = useState<Scenario | null | undefined>(undefined);
  const [drafts, setDrafts] = useState<Drafts>({});
  const [errors, setErrors] = useState<FieldErrors>({});
  // An edited field's error no longer applies; the others' still do.
  const edit = (next: Drafts, changed: string) => {
    setDrafts(next);
    setErrors(({ [changed]: _, ...rest }) => rest);
  };
  const [mode, setMode] = useState<ExecutionMode>("FULL");
  const [stepKey, setStepKey] = useState("");
  const [upstream, setUpstream] = useState<Record<string, string>>({});
  const [upstreamErrors, setUpstreamErrors] = useState<FieldErrors>({});
  const [problem, setProblem] = useState<string | null>(null);
  const [starting, setStarting] = useState(false);
  const [watching, setWatching] = useState<string | null>(null);
  const [recent, setRecent] = useState<Recent[] | null>(null);
  const id = useId();

  useEffect(() => {
    api.request(ConsolePanelScenarioDocument, { name }).then(
      (data) => {
        setScenario(data.scenario);
        if (data.scenario) {
          setDrafts(initialDrafts(data.scenario.inputs));
          const steps = stepsOf(data.scenario.definition);
          setStepKey(steps[steps.length - 1]?.key ?? "");
        }
      },
      (caught: unknown) => setProblem(caught instanceof ApiError ? caught.message : String(caught)),
    );
  }, [api, name]);

  const readRecent = useCallback(() => {
    api.request(ConsolePanelRecentDocument, { scenario: name, first: RECENT }).then(
      (data) => setRecent(data.executions.edges.map((edge) => edge.node)),
      () => {},
    );
  }, [api, name]);

  // Recent runs stay current: subscribe to the scenario's status changes, then read them.
  useEffect(() => {
    let timer: number | undefined;
    const unsubscribe = api.subscribe(ConsoleExecutionUpdatesDocument, () => ({ filter: { scenario: name } }), {
      subscribed: () => readRecent(),
      next: () => {
        window.clearTimeout(timer);
        timer = window.setTimeout(readRecent, 200);
      },
    });
    return () => {
      window.clearTimeout(timer);
      unsubscribe();
    };
  }, [api, name, readRecent]);

  const steps = useMemo(() => stepsOf(scenario?.definition), [scenario]);
  const step = steps.find((s) => s.key === stepKey);
  const needs = mode === "STEP_IN_CONTEXT" ? (step?.needs ?? []) : [];

  // Each upstream output starts as the latest output that step gave in a recent run, else {}.
  useEffect(() => {
    setUpstream((current) => {
      const next: Record<string, string> = {};
      for (const need of needs) {
        if (current[need] !== undefined) {
          next[need] = current[need];
          continue;
        }
        const output = recent
          ?.flatMap((run) => run.steps)
          .find((s) => s.key === need && s.status === "SUCCEEDED" && s.output !== null)?.output;
        next[need] = JSON.stringify(output ?? {}, null, 2);
      }
      return next;
    });
  }, [needs.join("\u0000"), recent]); // eslint-disable-line react-hooks/exhaustive-deps

  if (scenario === undefined) return problem ? <p className="error" role="alert">{problem}</p> : <p aria-busy="true">Loading…</p>;
  if (scenario === null) return <p className="error">There is no scenario named {name} in this workspace.</p>;

  function submit(event: FormEvent) {
    event.preventDefault();
    if (scenario === null || scenario === undefined) return;
    setProblem(null);
    const read = readDrafts(scenario.inputs, drafts);
    const upstreamValues: Record<string, unknown> = {};
    const badUpstream: FieldErrors = {};
    for (const need of needs) {
      try {
        upstreamValues[need] = JSON.parse(upstream[need] ?? "");
      } catch {
        badUpstream[need] = "not valid JSON";
      }
    }
    setErrors(read.errors);
    setUpstreamErrors(badUpstream);
    const wrong = [
      ...Object.entries(read.errors).map(([field, message]) => `${field}: ${message}`),
      ...Object.entries(badUpstream).map(([key, message]) => `upstream output of ${key}: ${message}`),
    ];
    if (wrong.length > 0) {
      setProblem(`Not sent — fix ${wrong.length === 1 ? "this field" : "these fields"} first: ${wrong.join("; ")}.`);
      return;
    }
    setStarting(true);
    api
      .request(StartExecutionDocument, {
        input: {
          scenario: scenario.name,
          inputs: read.values,
          mode,
          labels: ["test-panel"],
          ...(mode === "FULL" ? {} : { stepKey }),
          ...(mode === "STEP_IN_CONTEXT" ? { upstream: upstreamValues } : {}),
        },
      })
      .then(
        ({ startExecution: outcome }) => {
          if (outcome.__typename === "StartExecutionSuccess") {
            setWatching(outcome.execution.id);
            readRecent();
            return;
          }
          const fieldErrors = outcome.__typename === "ValidationError" ? outcome.fieldErrors : undefined;
          setErrors(fieldErrorsAt("inputs", fieldErrors));
          setUpstreamErrors(fieldErrorsAt("upstream", fieldErrors));
          setProblem(`The server refused the run: ${explain(outcome)}`);
        },
        (caught: unknown) => setProblem(caught instanceof ApiError ? caught.message : String(caught)),
      )
      .finally(() => setStarting(false));
  }

  const useInputs = (run: Recent) => {
    const inputs = (run.inputs ?? {}) as Record<string, unknown>;
    const next: Drafts = {};
    for (const spec of scenario.inputs) next[spec.name] = draftOf(spec, inputs[spec.name]);
    setDrafts(next);
    setErrors({});
  };

  return (
    <div className="panel-layout">
      <div className="panel-main">
        <form className="card panel-form" onSubmit={submit} noValidate aria-labelledby={`${id}-form`}>
          <h2 id={`${id}-form`}>
            {scenario.name} <span className="muted small">v{scenario.version}</span>
          </h2>
          {scenario.description && <p className="muted">{scenario.description}</p>}
          <fieldset>
            <legend>Inputs</legend>
            <InputFields specs={scenario.inputs} drafts={drafts} errors={errors} onChange={(next, changed) => edit(next, changed)} disabled={starting} />
          </fieldset>
          <fieldset className="modes">
            <legend>Mode</legend>
            {MODES.map((option) => (
              <label key={option.mode} className="check" title={option.help}>
                <input
                  type="radio"
                  name="mode"
                  value={option.mode}
                  checked={mode === option.mode}
                  onChange={() => setMode(option.mode)}
                  disabled={option.mode !== "FULL" && steps.length === 0}
                />
                {option.label}
                <span className="muted small">— {option.help}</span>
              </label>
            ))}
          </fieldset>
          {mode !== "FULL" && (
            <div className="field">
              <label htmlFor={`${id}-step`}>Step to run</label>
              <select id={`${id}-step`} name="step" value={stepKey} onChange={(event) => setStepKey(event.target.value)}>
                {steps.map((s) => (
                  <option key={s.key} value={s.key}>
                    {s.key}
                    {s.needs.length ? ` (needs ${s.needs.join(", ")})` : ""}
                  </option>
                ))}
              </select>
            </div>
          )}
          {mode === "STEP_IN_CONTEXT" && (
            <fieldset className="upstream">
              <legend>Simulated outputs of the steps {stepKey} needs</legend>
              {needs.length === 0 && <p className="muted small">Step {stepKey} needs no other step.</p>}
              {needs.map((need) => (
                <div key={need} className={`field${upstreamErrors[need] ? " invalid" : ""}`}>
                  <label htmlFor={`${id}-up-${need}`}>
                    Output of <code>{need}</code> (JSON, read as steps.{need}.output)
                  </label>
                  <textarea
                    id={`${id}-up-${need}`}
                    className="json"
                    data-upstream={need}
                    rows={Math.min(12, Math.max(3, (upstream[need] ?? "").split("\n").length))}
                    spellCheck={false}
                    aria-invalid={upstreamErrors[need] ? true : undefined}
                    aria-describedby={upstreamErrors[need] ? `${id}-up-${need}-error` : undefined}
                    value={upstream[need] ?? ""}
                    onChange={(event) => setUpstream({ ...upstream, [need]: event.target.value })}
                  />
                  {upstreamErrors[need] && (
                    <span id={`${id}-up-${need}-error`} className="error small" data-field-error={`upstream.${need}`}>
                      upstream.{need}: {upstreamErrors[need]}
                    </span>
                  )}
                </div>
              ))}
            </fieldset>
          )}
          {problem && (
            <p className="error" role="alert" data-problem>
              {problem}
            </p>
          )}
          <div className="actions">
            <button type="submit" disabled={!canRun || starting} data-run-button>
              {starting ? "Starting…" : "Run"}
            </button>
            {!canRun && <span className="muted small">Your role may not start executions.</span>}
          </div>
        </form>
        {watching && <RunWatch key={watching} id={watching} />}
      </div>
      <aside className="panel-recent" aria-labelledby={`${id}-recent`}>
        <h2 id={`${id}-recent`}>Recent runs of {scenario.name}</h2>
        {recent === null ? (
          <p aria-busy="true">Loading…</p>
        ) : recent.length === 0 ? (
          <p className="muted">None yet.</p>
        ) : (
          <ol className="recent-runs">
            {recent.map((run) => (
              <li key={run.id} data-recent={run.id} className={run.id === watching ? "current" : undefined}>
                <div className="recent-head">
                  <a href={href({ page: "execution", id: run.id })}>{run.name}</a>
                  <StatusBadge status={run.status} />
                </div>
                <div className="muted small">
                  {run.mode === "FULL" ? "full" : `${run.mode === "STEP" ? "step" : "in context"} ${run.stepKey}`} · {when(run.queuedAt)} ·{" "}
                  {duration(run.durationMs)}
                </div>
                <div className="recent-actions">
                  <button type="button" className="secondary small-button" onClick={() => setWatching(run.id)} aria-label={`Watch ${run.name} here`}>
                    Watch
                  </button>
                  <button type="button" className="secondary small-button" onClick={() => useInputs(run)} aria-label={`Use the inputs of ${run.name}`}>
                    Use inputs
                  </button>
                </div>
              </li>
            ))}
          </ol>
        )}
      </aside>
    </div>
  );
}
