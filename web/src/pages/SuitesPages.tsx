import { useCallback, useEffect, useId, useState, type FormEvent } from "react";
import { ApiError } from "../api";
import { ColumnChart, Progress } from "../components/Charts";
import { Confirm } from "../components/Confirm";
import { StatusBadge } from "../components/Status";
import { may, useSession } from "../context";
import { cost, duration, elapsed, label, when } from "../format";
import {
  ConsoleBatchDocument,
  ConsoleCompareSuiteRunsDocument,
  ConsoleExecutionUpdatesDocument,
  ConsoleRecentBatchesDocument,
  ConsoleRetryFailedCasesDocument,
  ConsoleSetSuiteBaselineDocument,
  ConsoleStartSuiteRunDocument,
  ConsoleStopBatchDocument,
  ConsoleSuiteDocument,
  ConsoleSuiteRunDocument,
  ConsoleSuiteRunUpdatesDocument,
  ConsoleSuitesDocument,
  type ConsoleBatchQuery,
  type ConsoleCompareSuiteRunsQuery,
  type ConsoleSuiteQuery,
  type ConsoleSuitesQuery,
  type SuiteCaseChange,
  type SuiteRunFullFragment,
} from "../gql/graphql";
import { href } from "../router";
import { explain } from "./ExecutionPage";

type Comparison = Extract<ConsoleCompareSuiteRunsQuery["compareSuiteRuns"], { __typename?: "SuiteComparison" }>;
type Batch = NonNullable<ConsoleBatchQuery["batch"]>;

function percent(rate: number | null | undefined): string {
  return rate === null || rate === undefined ? "—" : `${Math.round(rate * 100)}%`;
}

function signed(value: number | null | undefined, format: (n: number) => string): string {
  if (value === null || value === undefined) return "—";
  if (value === 0) return "±0";
  return `${value > 0 ? "+" : "−"}${format(Math.abs(value))}`;
}

function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): [T | undefined, string | null, () => void] {
  const [value, setValue] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [reads, setReads] = useState(0);
  useEffect(() => {
    const controller = new AbortController();
    load(controller.signal).then(
      (found) => {
        setValue(found);
        setError(null);
      },
      (caught: unknown) => {
        if (!controller.signal.aborted) setError(caught instanceof ApiError ? caught.message : String(caught));
      },
    );
    return () => controller.abort();
  }, [...deps, reads]); // eslint-disable-line react-hooks/exhaustive-deps
  return [value, error, useCallback(() => setReads((n) => n + 1), [])];
}

function Problem({ text }: { text: string | null }) {
  return text ? (
    <p className="error" role="alert">
      {text}
    </p>
  ) : null;
}

/** The suites, each with its baseline; and the batches started lately. */
export function SuitesPage() {
  const { api } = useSession();
  const [suites, error] = useLoad((signal) => api.request(ConsoleSuitesDocument, {}, signal).then((d) => d.suites), [api]);
  const [batches] = useLoad(
    (signal) =>
      api.request(ConsoleRecentBatchesDocument, { first: 500 }, signal).then((data) => {
        const seen = new Map<string, { id: string; queuedAt: string; kind: string; scenario: string | null; count: number }>();
        for (const { node } of data.executions.edges) {
          if (!node.batchId) continue;
          const known = seen.get(node.batchId);
          if (known) known.count += 1;
          else
            seen.set(node.batchId, {
              id: node.batchId,
              queuedAt: node.queuedAt,
              kind: node.triggerType === "SUITE" ? "suite run" : "batch",
              scenario: node.scenario?.name ?? null,
              count: 1,
            });
        }
        return [...seen.values()].slice(0, 20);
      }),
    [api],
  );
  return (
    <section aria-labelledby="suites-title">
      <div className="title-row">
        <h1 id="suites-title">Suites</h1>
        <a href="#/reviews">Review queue →</a>
      </div>
      <Problem text={error} />
      {suites === undefined ? (
        !error && <p aria-busy="true">Loading…</p>
      ) : suites.length === 0 ? (
        <p className="muted">No suites yet: save one with createSuite (see docs/suites.md).</p>
      ) : (
        <div className="table-wrap">
          <table className="suites">
            <caption className="visually-hidden">Suites</caption>
            <thead>
              <tr>
                <th scope="col">Suite</th>
                <th scope="col">Version</th>
                <th scope="col">Tags</th>
                <th scope="col">Baseline</th>
              </tr>
            </thead>
            <tbody>
              {suites.map((suite: ConsoleSuitesQuery["suites"][number]) => (
                <tr key={suite.name} data-suite={suite.name}>
                  <th scope="row">
                    <a href={`#/suites/${encodeURIComponent(suite.name)}`}>{suite.name}</a>
                    {suite.description && <div className="muted small">{suite.description}</div>}
                  </th>
                  <td>v{suite.version}</td>
                  <td>
                    {suite.tags.map((tag) => (
                      <span key={tag} className="tag">
                        {tag}
                      </span>
                    ))}
                  </td>
                  <td>{suite.baseline ? <a href={`#/suite-runs/${suite.baseline.runId}`}>set {when(suite.baseline.setAt)}</a> : "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <h2>Recent batches</h2>
      {batches === undefined ? (
        <p aria-busy="true">Loading…</p>
      ) : batches.length === 0 ? (
        <p className="muted">No batch or suite run lately.</p>
      ) : (
        <ul className="plain-list">
          {batches.map((batch) => (
            <li key={batch.id} data-batch-link={batch.id}>
              <a href={`#/batches/${batch.id}`}>
                {batch.kind} {batch.scenario ? `of ${batch.scenario}` : ""}
              </a>{" "}
              <span className="muted small">
                queued {when(batch.queuedAt)} · {batch.count} recent executions
              </span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

/** A suite: its cases, runs (with a pass-rate trend) and a form to start a run. */
export function SuitePage({ name }: { name: string }) {
  const { api, viewer } = useSession();
  const [data, error] = useLoad((signal) => api.request(ConsoleSuiteDocument, { name }, signal), [api, name]);
  const [repeat, setRepeat] = useState("1");
  const [concurrency, setConcurrency] = useState("10");
  const [problem, setProblem] = useState<string | null>(null);
  const id = useId();

  function start(event: FormEvent) {
    event.preventDefault();
    const wrong: string[] = [];
    const repeats = Number(repeat);
    const parallel = Number(concurrency);
    if (!Number.isInteger(repeats) || repeats < 1 || repeats > 100) wrong.push(`repeat: expected a whole number 1..100, got "${repeat}"`);
    if (!Number.isInteger(parallel) || parallel < 1 || parallel > 1000) wrong.push(`concurrency: expected a whole number 1..1000, got "${concurrency}"`);
    if (wrong.length) {
      setProblem(wrong.join("; "));
      return;
    }
    setProblem(null);
    api.request(ConsoleStartSuiteRunDocument, { input: { suite: name, repeat: repeats, concurrency: parallel } }).then(
      ({ startSuiteRun: outcome }) => {
        if (outcome.__typename === "SuiteRunSuccess") window.location.hash = `#/suite-runs/${outcome.run.id}`;
        else setProblem(explain(outcome));
      },
      (caught: unknown) => setProblem(caught instanceof ApiError ? caught.message : String(caught)),
    );
  }

  if (data === undefined) return error ? <Problem text={error} /> : <p aria-busy="true">Loading…</p>;
  const suite: ConsoleSuiteQuery["suite"] = data.suite;
  if (suite === null) return <p className="error">This workspace has no suite named {name}.</p>;
  return (
    <section aria-labelledby="suite-title" className="suite">
      <p>
        <a href="#/suites">← Suites</a>
      </p>
      <h1 id="suite-title">
        {suite.name} <span className="muted small">v{suite.version}</span>
      </h1>
      {suite.description && <p>{suite.description}</p>}
      {may(viewer, "execution:write") && (
        <form className="filters" onSubmit={start} aria-label="Start a run" noValidate>
          <div className="field">
            <label htmlFor={`${id}-repeat`}>Repeat each case</label>
            <input id={`${id}-repeat`} inputMode="numeric" value={repeat} onChange={(e) => setRepeat(e.target.value)} size={5} />
          </div>
          <div className="field">
            <label htmlFor={`${id}-concurrency`}>At once</label>
            <input id={`${id}-concurrency`} inputMode="numeric" value={concurrency} onChange={(e) => setConcurrency(e.target.value)} size={5} />
          </div>
          <button type="submit">Start a run</button>
        </form>
      )}
      <Problem text={problem} />
      {data.suiteTrend.length > 1 && (
        <ColumnChart
          chart="suite-trend"
          title={`Pass rate of the last ${data.suiteTrend.length} runs`}
          max={1}
          columns={data.suiteTrend.map((point) => ({
            label: new Date(point.createdAt).toLocaleDateString(undefined, { month: "short", day: "numeric" }),
            value: point.passRate,
            text: `${percent(point.passRate)} (${point.ended} of ${point.total} ended)`,
          }))}
        />
      )}
      <h2>Runs</h2>
      {data.suiteRuns.length === 0 ? (
        <p className="muted">No runs yet.</p>
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Run</th>
                <th scope="col">Progress</th>
                <th scope="col">Pass rate</th>
                <th scope="col">Passed / failed / flaky</th>
                <th scope="col">p50</th>
                <th scope="col">Cost</th>
              </tr>
            </thead>
            <tbody>
              {data.suiteRuns.map((run) => (
                <tr key={run.id} data-suite-run={run.id}>
                  <th scope="row">
                    <a href={`#/suite-runs/${run.id}`}>{when(run.createdAt)}</a>
                    {suite.baseline?.runId === run.id && <span className="tag">baseline</span>}
                    <div className="muted small">
                      v{run.suiteVersion} · ×{run.repeat} · {run.triggeredBy}
                    </div>
                  </th>
                  <td>
                    <Progress value={run.progress} label={`Run of ${when(run.createdAt)}: ${run.ended} of ${run.total} ended`} />
                  </td>
                  <td>{percent(run.passRate)}</td>
                  <td>
                    {run.passedCases} / {run.failedCases} / {run.flakyCases}
                  </td>
                  <td>{duration(run.durationP50Ms)}</td>
                  <td>{cost(run.usage)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <h2>Cases</h2>
      <ul className="plain-list">
        {suite.cases.map((item) => (
          <li key={item.name}>
            <code>{item.name}</code>{" "}
            <span className="muted small">
              {item.scenario ?? `inline ${item.definitionName}`} · expects {label(item.expectedStatus)}
            </span>
          </li>
        ))}
      </ul>
    </section>
  );
}

const CHANGES: { change: SuiteCaseChange; text: string; tone: string }[] = [
  { change: "REGRESSED", text: "Regressed", tone: "tone-bad" },
  { change: "FLAKY", text: "Flaky", tone: "tone-warn" },
  { change: "FIXED", text: "Fixed", tone: "tone-ok" },
  { change: "UNCHANGED_FAIL", text: "Still failing", tone: "tone-bad" },
  { change: "NEW", text: "New", tone: "" },
  { change: "REMOVED", text: "Removed", tone: "tone-muted" },
  { change: "PENDING", text: "Pending", tone: "tone-muted" },
  { change: "UNCHANGED_PASS", text: "Still passing", tone: "tone-ok" },
];

/** A suite run live (per case, per repeat), and its comparison with the baseline or another run. */
export function SuiteRunPage({ id, query }: { id: string; query: URLSearchParams }) {
  const { api, viewer } = useSession();
  const [run, setRun] = useState<SuiteRunFullFragment | null | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<{ ok: boolean; text: string } | null>(null);
  const [asking, setAsking] = useState<null | "baseline" | "retry" | "stop">(null);
  const [others, setOthers] = useState<ConsoleSuiteQuery["suiteRuns"]>([]);
  const [baseline, setBaseline] = useState<string | null>(null);
  const base = query.get("base");
  const canWrite = may(viewer, "execution:write");
  const fieldId = useId();

  const follow = useCallback(() => {
    // The run as it stands, then again as its executions change; a completed run sends itself once.
    return api.subscribe(ConsoleSuiteRunUpdatesDocument, () => ({ id }), {
      next: ({ suiteRunUpdates }) => setRun(suiteRunUpdates),
      error: (caught) => setError(caught.message),
    });
  }, [api, id]);

  useEffect(() => {
    api.request(ConsoleSuiteRunDocument, { id }).then(
      (data) => {
        setRun((current) => (current === undefined ? data.suiteRun : current));
      },
      (caught: unknown) => setError(caught instanceof ApiError ? caught.message : String(caught)),
    );
    return follow();
  }, [api, id, follow]);

  const suiteName = run?.suite;
  const [suiteReads, setSuiteReads] = useState(0);
  useEffect(() => {
    if (!suiteName) return;
    api.request(ConsoleSuiteDocument, { name: suiteName }).then(
      (data) => {
        setOthers(data.suiteRuns.filter((other) => other.id !== id));
        setBaseline(data.suite?.baseline?.runId ?? null);
      },
      () => {},
    );
  }, [api, suiteName, id, suiteReads]);

  if (run === undefined) return error ? <Problem text={error} /> : <p aria-busy="true">Loading…</p>;
  if (run === null) return <p className="error">This workspace has no suite run {id}.</p>;

  const act = (kind: "baseline" | "retry" | "stop") => {
    setAsking(null);
    const done = (outcome: { __typename?: string; message?: string }, text: string) => {
      const problem = explain(outcome);
      setNotice(problem ? { ok: false, text: problem } : { ok: true, text });
      if (!problem) setSuiteReads((n) => n + 1);
      if (!problem && kind === "retry") follow();
    };
    const failed = (caught: unknown) => setNotice({ ok: false, text: caught instanceof ApiError ? caught.message : String(caught) });
    if (kind === "baseline") {
      api.request(ConsoleSetSuiteBaselineDocument, { run: id }).then((d) => done(d.setSuiteBaseline, "This run is now the suite's baseline."), failed);
    } else if (kind === "retry") {
      api.request(ConsoleRetryFailedCasesDocument, { run: id }).then((d) => done(d.retryFailedCases, "The failed repeats are queued again."), failed);
    } else {
      api.request(ConsoleStopBatchDocument, { id: run.batchId }).then((d) => done(d.stopBatch, "The run's executions are being stopped."), failed);
    }
  };

  return (
    <section aria-labelledby="suite-run-title" className="suite-run" data-suite-run-complete={run.complete}>
      <p>
        <a href={`#/suites/${encodeURIComponent(run.suite)}`}>← {run.suite}</a>
      </p>
      <div className="title-row">
        <h1 id="suite-run-title">
          Run of {run.suite} <span className="muted small">v{run.suiteVersion}</span>
        </h1>
        {baseline === run.id && <span className="tag">baseline</span>}
        {!run.complete && (
          <span className="live" data-live="true">
            <span className="live-dot" aria-hidden="true" />
            Live
          </span>
        )}
      </div>
      <p className="muted small">
        Started {when(run.createdAt)} by {run.triggeredBy} · {run.total} executions ({run.repeat} per case) ·{" "}
        <a href={`#/batches/${run.batchId}`}>its batch</a>
      </p>
      <Progress value={run.progress} label={`${run.ended} of ${run.total} executions ended`} />
      <dl className="meta">
        <div>
          <dt>Pass rate</dt>
          <dd data-pass-rate>{percent(run.passRate)}</dd>
        </div>
        <div>
          <dt>Cases passed</dt>
          <dd data-passed-cases>{run.passedCases}</dd>
        </div>
        <div>
          <dt>Failed</dt>
          <dd data-failed-cases>{run.failedCases}</dd>
        </div>
        <div>
          <dt>Flaky</dt>
          <dd data-flaky-cases>{run.flakyCases}</dd>
        </div>
        <div>
          <dt>Pending</dt>
          <dd>{run.pendingCases}</dd>
        </div>
        <div>
          <dt>p50 duration</dt>
          <dd>{duration(run.durationP50Ms)}</dd>
        </div>
        <div>
          <dt>Cost</dt>
          <dd>{cost(run.usage)}</dd>
        </div>
      </dl>
      {canWrite && (
        <div className="toolbar" role="group" aria-label="Run controls">
          {run.complete && baseline !== run.id && (
            <button type="button" className="secondary" onClick={() => setAsking("baseline")}>
              Set as baseline
            </button>
          )}
          {run.complete && run.failedCases + run.flakyCases > 0 && (
            <button type="button" className="secondary" onClick={() => setAsking("retry")}>
              Retry failed cases
            </button>
          )}
          {!run.complete && (
            <button type="button" className="danger" onClick={() => setAsking("stop")}>
              Stop run
            </button>
          )}
        </div>
      )}
      {notice && (
        <p className={notice.ok ? "notice" : "error"} role={notice.ok ? "status" : "alert"} data-result={notice.ok ? "ok" : "error"}>
          {notice.text}
        </p>
      )}
      <h2>Cases</h2>
      <div className="table-wrap">
        <table className="cases">
          <thead>
            <tr>
              <th scope="col">Case</th>
              <th scope="col">Result</th>
              <th scope="col">Repeats</th>
              <th scope="col">Pass rate</th>
              <th scope="col">p50</th>
              <th scope="col">Cost</th>
            </tr>
          </thead>
          <tbody>
            {run.cases.map((item) => (
              <tr key={item.name} data-case={item.name} data-case-status={item.status}>
                <th scope="row">
                  <code>{item.name}</code>
                  <div className="muted small">expects {label(item.expectedStatus)}</div>
                  {item.failures.slice(0, 3).map((failure) => (
                    <div key={`${failure.executionId}-${failure.stepKey}-${failure.attempt}`} className="error small">
                      repeat {failure.repeat}, step {failure.stepKey}: {failure.error ?? label(failure.status)}
                    </div>
                  ))}
                </th>
                <td>
                  <span className={`status case-${item.status.toLowerCase()}`}>{label(item.status)}</span>
                </td>
                <td>
                  <span className="repeats">
                    {item.repeats.map((repeat) => (
                      <a
                        key={`${repeat.repeat}-${repeat.attempt}`}
                        href={href({ page: "execution", id: repeat.executionId })}
                        className={`repeat ${repeat.passed ? "passed" : ["QUEUED", "RUNNING", "PAUSED", "PAUSING", "WAITING", "STOPPING"].includes(repeat.status) ? "pending" : "failed"}`}
                        title={`repeat ${repeat.repeat}${repeat.attempt > 1 ? ` (attempt ${repeat.attempt})` : ""}: ${label(repeat.status)}`}
                        aria-label={`Repeat ${repeat.repeat}: ${label(repeat.status)}`}
                      >
                        {repeat.passed ? "✓" : repeat.status === "RUNNING" || repeat.status === "QUEUED" ? "…" : "✗"}
                      </a>
                    ))}
                  </span>
                </td>
                <td>{percent(item.passRate)}</td>
                <td>{duration(item.durationP50Ms)}</td>
                <td>{cost(item.usage)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>

      <h2>Comparison</h2>
      <div className="field inline-field">
        <label htmlFor={`${fieldId}-base`}>Compare with</label>
        <select
          id={`${fieldId}-base`}
          value={base ?? ""}
          onChange={(event) => {
            window.location.hash = `#/suite-runs/${id}${event.target.value ? `?base=${event.target.value}` : ""}`;
          }}
        >
          <option value="">the suite's baseline</option>
          {others.map((other) => (
            <option key={other.id} value={other.id}>
              run of {when(other.createdAt)}
              {other.id === baseline ? " (baseline)" : ""}
            </option>
          ))}
        </select>
      </div>
      <ComparisonView head={id} base={base} version={`${run.ended}/${run.total}/${suiteReads}`} />

      {asking && (
        <Confirm
          title={asking === "baseline" ? "Make this run the baseline?" : asking === "retry" ? "Retry the failed cases?" : "Stop this run?"}
          body={
            asking === "baseline"
              ? "Comparisons without a base compare with it from now on; the history keeps the earlier baselines."
              : asking === "retry"
                ? "Each repeat that did not pass runs again as its next attempt in this run."
                : "Its queued and paused executions are cancelled and its running ones stopped."
          }
          action={asking === "baseline" ? "Set baseline" : asking === "retry" ? "Retry" : "Stop"}
          onCancel={() => setAsking(null)}
          onConfirm={() => act(asking)}
        />
      )}
    </section>
  );
}

/** compareSuiteRuns as a verdict, counts per kind of change, and the cases grouped by change. */
function ComparisonView({ head, base, version }: { head: string; base: string | null; version: string }) {
  const { api } = useSession();
  const [result, error] = useLoad(
    (signal) => api.request(ConsoleCompareSuiteRunsDocument, { head, base }, signal).then((d) => d.compareSuiteRuns),
    [api, head, base, version],
  );
  if (result === undefined) return error ? <Problem text={error} /> : <p aria-busy="true">Comparing…</p>;
  if (result.__typename !== "SuiteComparison") {
    return (
      <p className="muted" data-comparison="none">
        {result.__typename === "NotFoundError" && !base
          ? "The suite has no baseline yet: set one on an ended run, or pick a run to compare with."
          : explain(result as { __typename?: string; message?: string })}
      </p>
    );
  }
  const comparison = result as Comparison;
  const groups = CHANGES.map((kind) => ({ ...kind, cases: comparison.cases.filter((c) => c.change === kind.change) })).filter(
    (group) => group.cases.length > 0,
  );
  return (
    <div className="comparison" data-comparison={comparison.regressed ? "regressed" : "ok"}>
      <p className={comparison.regressed ? "error" : "notice"} data-verdict>
        <strong>{comparison.regressed ? "Regressed: " : ""}</strong>
        {comparison.verdict}
      </p>
      <p className="muted small">
        Against the run of {when(comparison.base.createdAt)} (<a href={`#/suite-runs/${comparison.base.id}`}>open</a>) · p50{" "}
        {signed(comparison.durationP50DeltaMs, (ms) => duration(ms))} · cost per execution{" "}
        {signed(comparison.costDeltaUsd, (usd) => `$${usd.toFixed(4)}`)} · tokens per execution{" "}
        {signed(comparison.tokensDelta, (n) => String(Math.round(n)))}
      </p>
      <ul className="change-counts" aria-label="Cases by change">
        {[
          ["Regressed", comparison.regressedCases, "tone-bad"],
          ["Flaky", comparison.flakyCases, "tone-warn"],
          ["Fixed", comparison.fixedCases, "tone-ok"],
          ["Still failing", comparison.unchangedFailCases, "tone-bad"],
          ["Still passing", comparison.unchangedPassCases, "tone-ok"],
          ["New", comparison.newCases, ""],
          ["Removed", comparison.removedCases, "tone-muted"],
          ["Pending", comparison.pendingCases, "tone-muted"],
        ].map(([text, count, tone]) => (
          <li key={text as string} className={`count ${tone}`} data-change-count={text}>
            <strong>{count}</strong> {text}
          </li>
        ))}
      </ul>
      {groups.map((group) => (
        <details key={group.change} open={group.change !== "UNCHANGED_PASS"} data-change-group={group.change}>
          <summary>
            <span className={`change ${group.tone}`}>{group.text}</span> ({group.cases.length})
          </summary>
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Case</th>
                  <th scope="col">Base</th>
                  <th scope="col">Head</th>
                  <th scope="col">p50 Δ</th>
                  <th scope="col">Cost Δ</th>
                  <th scope="col">Assertions</th>
                </tr>
              </thead>
              <tbody>
                {group.cases.map((item) => (
                  <tr key={item.name} data-compared-case={item.name} data-change={item.change}>
                    <th scope="row">
                      <code>{item.name}</code>
                    </th>
                    <td>
                      {item.baseStatus ? label(item.baseStatus) : "—"} {item.basePassRate !== null && `(${percent(item.basePassRate)})`}
                    </td>
                    <td>
                      {item.headStatus ? label(item.headStatus) : "—"} {item.headPassRate !== null && `(${percent(item.headPassRate)})`}
                    </td>
                    <td>{signed(item.durationP50DeltaMs, (ms) => duration(ms))}</td>
                    <td>{signed(item.costDeltaUsd, (usd) => `$${usd.toFixed(4)}`)}</td>
                    <td className="small">
                      {item.assertionChanges.map((change) => (
                        <div key={`${change.stepKey}-${change.assertion}-${change.path}`}>
                          {change.change === "NEWLY_FAILING" ? "newly failing" : "no longer failing"}: {change.stepKey} {change.assertion}
                          {change.path ? ` ${change.path}` : ""}
                        </div>
                      ))}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </details>
      ))}
    </div>
  );
}

/** A batch's progress by status, live: its executions' status changes re-read it. */
export function BatchPage({ id }: { id: string }) {
  const { api, viewer } = useSession();
  const [batch, setBatch] = useState<Batch | null | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [asking, setAsking] = useState(false);
  const [notice, setNotice] = useState<{ ok: boolean; text: string } | null>(null);

  const read = useCallback(() => {
    api.request(ConsoleBatchDocument, { id }).then(
      (data) => setBatch(data.batch),
      (caught: unknown) => setError(caught instanceof ApiError ? caught.message : String(caught)),
    );
  }, [api, id]);

  useEffect(() => {
    let timer: number | undefined;
    // Subscribe first, then read (again after each reconnect); a burst of changes is one read.
    const unsubscribe = api.subscribe(ConsoleExecutionUpdatesDocument, () => ({ filter: { batch: id } }), {
      subscribed: () => read(),
      next: () => {
        if (timer !== undefined) return;
        timer = window.setTimeout(() => {
          timer = undefined;
          read();
        }, 250);
      },
      error: (caught) => setError(caught.message),
    });
    return () => {
      window.clearTimeout(timer);
      unsubscribe();
    };
  }, [api, id, read]);

  if (batch === undefined) return error ? <Problem text={error} /> : <p aria-busy="true">Loading…</p>;
  if (batch === null) return <p className="error">This workspace has no batch {id}.</p>;
  const ended = batch.succeeded + batch.failed + batch.cancelled + batch.timedOut;
  const counts: [string, number, string][] = [
    ["Queued", batch.queued, "tone-muted"],
    ["Running", batch.running, ""],
    ["Paused", batch.paused, "tone-warn"],
    ["Waiting", batch.waiting, "tone-warn"],
    ["Succeeded", batch.succeeded, "tone-ok"],
    ["Failed", batch.failed, "tone-bad"],
    ["Timed out", batch.timedOut, "tone-bad"],
    ["Cancelled", batch.cancelled, "tone-muted"],
  ];
  const now = Date.now();
  return (
    <section aria-labelledby="batch-title" className="batch" data-batch-ended={ended} data-batch-total={batch.total}>
      <p>
        <a href="#/suites">← Suites and batches</a>
      </p>
      <div className="title-row">
        <h1 id="batch-title">Batch {batch.name}</h1>
        {batch.running > 0 && (
          <span className="live" data-live="true">
            <span className="live-dot" aria-hidden="true" />
            Live
          </span>
        )}
      </div>
      <p className="muted small">
        {batch.scenario ? `Scenario ${batch.scenario} · ` : ""}
        {batch.total} executions, at most {batch.concurrency} at once · started {when(batch.createdAt)} by {batch.triggeredBy}
        {batch.stoppedAt ? ` · stopped ${when(batch.stoppedAt)}` : ""} · cost {cost(batch.usage)}
      </p>
      <Progress value={batch.progress} label={`${ended} of ${batch.total} executions ended`} />
      <div className="stacked" role="img" aria-label={counts.map(([text, count]) => `${count} ${text.toLowerCase()}`).join(", ")}>
        {counts
          .filter(([, count]) => count > 0)
          .map(([text, count, tone]) => (
            <span key={text} className={`segment ${tone}`} style={{ flexGrow: count }} title={`${count} ${text.toLowerCase()}`} />
          ))}
      </div>
      <ul className="change-counts" aria-label="Executions by status">
        {counts.map(([text, count, tone]) => (
          <li key={text} className={`count ${tone}`} data-batch-count={text}>
            <strong>{count}</strong> {text}
          </li>
        ))}
      </ul>
      {may(viewer, "execution:write") && ended < batch.total && !batch.stoppedAt && (
        <div className="toolbar">
          <button type="button" className="danger" onClick={() => setAsking(true)}>
            Stop batch
          </button>
        </div>
      )}
      {notice && (
        <p className={notice.ok ? "notice" : "error"} role={notice.ok ? "status" : "alert"}>
          {notice.text}
        </p>
      )}
      <h2>Executions</h2>
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Execution</th>
              <th scope="col">Status</th>
              <th scope="col">Duration</th>
              <th scope="col">Cost</th>
            </tr>
          </thead>
          <tbody>
            {batch.executions.map((row) => (
              <tr key={row.id} data-execution={row.id} data-status={row.status}>
                <td>
                  <a href={href({ page: "execution", id: row.id })}>{row.name}</a>
                  {row.labels.length > 0 && <div className="muted small">{row.labels.join(", ")}</div>}
                </td>
                <td>
                  <StatusBadge status={row.status} />
                </td>
                <td>{duration(elapsed(row.startedAt, row.finishedAt, row.durationMs, now))}</td>
                <td>{cost(row.usage)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {asking && (
        <Confirm
          title="Stop this batch?"
          body="Its queued and paused executions are cancelled and its running ones stopped."
          action="Stop"
          onCancel={() => setAsking(false)}
          onConfirm={() => {
            setAsking(false);
            api.request(ConsoleStopBatchDocument, { id }).then(
              (data) => {
                const problem = explain(data.stopBatch);
                setNotice(problem ? { ok: false, text: problem } : { ok: true, text: "Stopping its executions." });
                read();
              },
              (caught: unknown) => setNotice({ ok: false, text: caught instanceof ApiError ? caught.message : String(caught) }),
            );
          }}
        />
      )}
    </section>
  );
}
