import { useEffect, useId, useState } from "react";
import { ApiError } from "../api";
import { BarChart, ColumnChart } from "../components/Charts";
import { useSession } from "../context";
import { cost, duration, label, tokens } from "../format";
import { ConsoleMetricsDocument, ListScenariosDocument, type ConsoleMetricsQuery } from "../gql/graphql";

type Metrics = ConsoleMetricsQuery["executionMetrics"];

// Each window, and the slices its trend is cut into.
const WINDOWS: Record<string, { text: string; ms: number; slices: number }> = {
  "1h": { text: "Last hour", ms: 3600e3, slices: 12 },
  "24h": { text: "Last 24 hours", ms: 86400e3, slices: 24 },
  "7d": { text: "Last 7 days", ms: 7 * 86400e3, slices: 14 },
  "30d": { text: "Last 30 days", ms: 30 * 86400e3, slices: 30 },
};
const TONES: Record<string, string> = {
  SUCCEEDED: "tone-ok",
  FAILED: "tone-bad",
  TIMED_OUT: "tone-bad",
  CANCELLED: "tone-muted",
};

type Loaded = {
  since: Date;
  until: Date;
  overall: Metrics;
  slices: { start: Date; metrics: Metrics }[];
  scenarios: { name: string; metrics: Metrics }[];
};

function percent(rate: number | null): string {
  return rate === null ? "—" : `${(rate * 100).toFixed(rate === 1 || rate === 0 ? 0 : 1)}%`;
}

function money(value: number | null): string {
  return value === null ? "unpriced" : value < 0.01 ? `$${value.toFixed(4)}` : `$${value.toFixed(2)}`;
}

/** Counts by status, success rate, p50/p95 duration and cost, overall and per scenario, over a window. */
export function MetricsPage({ query }: { query: URLSearchParams }) {
  const { api } = useSession();
  const key = WINDOWS[query.get("window") ?? ""] ? (query.get("window") as string) : "24h";
  const window_ = WINDOWS[key];
  const [loaded, setLoaded] = useState<Loaded | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [reads, setReads] = useState(0);
  const id = useId();

  useEffect(() => {
    const controller = new AbortController();
    const until = new Date();
    const since = new Date(until.getTime() - window_.ms);
    const read = (from: Date, to: Date, scenario: string | null = null) =>
      api
        .request(ConsoleMetricsDocument, { since: from.toISOString(), until: to.toISOString(), scenario }, controller.signal)
        .then((data) => data.executionMetrics);
    const step = window_.ms / window_.slices;
    const starts = Array.from({ length: window_.slices }, (_, index) => new Date(since.getTime() + index * step));
    // One request per scenario and per slice, all at once: each answer is one SQL aggregate.
    Promise.all([
      read(since, until),
      Promise.all(starts.map((start) => read(start, new Date(start.getTime() + step)).then((metrics) => ({ start, metrics })))),
      api
        .request(ListScenariosDocument, {}, controller.signal)
        .then((data) =>
          Promise.all(data.scenarios.map((s) => read(since, until, s.name).then((metrics) => ({ name: s.name, metrics })))),
        ),
    ]).then(
      ([overall, slices, scenarios]) => {
        setError(null);
        setLoaded({ since, until, overall, slices, scenarios: scenarios.filter((s) => s.metrics.finished > 0) });
      },
      (caught: unknown) => {
        if (!controller.signal.aborted) setError(caught instanceof ApiError ? caught.message : String(caught));
      },
    );
    return () => controller.abort();
  }, [api, key, reads]); // eslint-disable-line react-hooks/exhaustive-deps

  const sliceLabel = (start: Date) =>
    window_.ms <= 86400e3
      ? start.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })
      : start.toLocaleDateString(undefined, { month: "short", day: "numeric" });

  return (
    <section aria-labelledby="metrics-title" className="metrics" data-metrics-window={key} data-loaded={loaded !== null}>
      <div className="title-row">
        <h1 id="metrics-title">Metrics</h1>
        <div className="field inline-field">
          <label htmlFor={`${id}-window`}>Window</label>
          <select
            id={`${id}-window`}
            value={key}
            onChange={(event) => {
              setLoaded(null);
              window.location.hash = `#/metrics?window=${event.target.value}`;
            }}
          >
            {Object.entries(WINDOWS).map(([value, option]) => (
              <option key={value} value={value}>
                {option.text}
              </option>
            ))}
          </select>
        </div>
        <button type="button" className="secondary" onClick={() => setReads((n) => n + 1)}>
          Refresh
        </button>
      </div>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {loaded === null ? (
        !error && <p aria-busy="true">Loading…</p>
      ) : (
        <>
          <p className="muted small">
            Executions that finished between {loaded.since.toLocaleString()} and {loaded.until.toLocaleString()}.
          </p>
          <dl className="meta stats" aria-label="Totals">
            <div>
              <dt>Finished</dt>
              <dd data-stat="finished">{loaded.overall.finished}</dd>
            </div>
            <div>
              <dt>Success rate</dt>
              <dd data-stat="success-rate">{percent(loaded.overall.successRate)}</dd>
            </div>
            <div>
              <dt>p50 duration</dt>
              <dd data-stat="p50">{duration(loaded.overall.p50DurationMs)}</dd>
            </div>
            <div>
              <dt>p95 duration</dt>
              <dd data-stat="p95">{duration(loaded.overall.p95DurationMs)}</dd>
            </div>
            <div>
              <dt>Longest</dt>
              <dd>{duration(loaded.overall.maxDurationMs)}</dd>
            </div>
            <div>
              <dt>Throughput</dt>
              <dd>{loaded.overall.throughputPerMinute.toFixed(2)} / min</dd>
            </div>
            <div>
              <dt>Cost</dt>
              <dd data-stat="cost">{cost(loaded.overall.usage)}</dd>
            </div>
            <div>
              <dt>Tokens</dt>
              <dd>
                {loaded.overall.usage.calls === 0
                  ? "—"
                  : `${tokens(loaded.overall.usage.tokensInput)} in · ${tokens(loaded.overall.usage.tokensOutput)} out`}
              </dd>
            </div>
          </dl>
          <div className="charts">
            <BarChart
              chart="counts"
              title="Finished executions by status"
              bars={loaded.overall.counts.map((c) => ({ label: label(c.status), value: c.count, tone: TONES[c.status] }))}
            />
            <ColumnChart
              chart="finished-over-time"
              title={`Finished per ${window_.ms / window_.slices >= 86400e3 ? "day" : window_.ms / window_.slices >= 3600e3 ? "hour" : `${window_.ms / window_.slices / 60e3} minutes`}`}
              columns={loaded.slices.map((s) => ({ label: sliceLabel(s.start), value: s.metrics.finished, text: `${s.metrics.finished} finished` }))}
            />
            <ColumnChart
              chart="success-over-time"
              title="Success rate over time"
              max={1}
              columns={loaded.slices.map((s) => ({
                label: sliceLabel(s.start),
                value: s.metrics.successRate,
                text: percent(s.metrics.successRate),
              }))}
            />
          </div>
          <h2>By scenario</h2>
          {loaded.scenarios.length === 0 ? (
            <p className="muted">No execution of a saved scenario finished in this window.</p>
          ) : (
            <>
              <div className="charts">
                <BarChart
                  chart="scenario-success"
                  title="Success rate"
                  max={1}
                  bars={loaded.scenarios.map((s) => ({
                    label: s.name,
                    value: s.metrics.successRate,
                    text: percent(s.metrics.successRate),
                    tone: s.metrics.successRate === 1 ? "tone-ok" : (s.metrics.successRate ?? 0) < 0.5 ? "tone-bad" : "",
                  }))}
                />
                <BarChart
                  chart="scenario-p50"
                  title="p50 duration"
                  format={(ms) => duration(ms)}
                  max={Math.max(0, ...loaded.scenarios.map((s) => s.metrics.p95DurationMs ?? 0))}
                  bars={loaded.scenarios.map((s) => ({ label: s.name, value: s.metrics.p50DurationMs }))}
                />
                <BarChart
                  chart="scenario-p95"
                  title="p95 duration"
                  format={(ms) => duration(ms)}
                  bars={loaded.scenarios.map((s) => ({ label: s.name, value: s.metrics.p95DurationMs, tone: "tone-warn" }))}
                />
                <BarChart
                  chart="scenario-cost"
                  title="Cost"
                  bars={loaded.scenarios.map((s) => ({
                    label: s.name,
                    value: s.metrics.usage.costUsd,
                    text: s.metrics.usage.calls === 0 ? "no calls" : money(s.metrics.usage.costUsd),
                  }))}
                />
              </div>
              <div className="table-wrap">
                <table className="scenario-metrics">
                  <caption className="visually-hidden">Metrics per scenario</caption>
                  <thead>
                    <tr>
                      <th scope="col">Scenario</th>
                      <th scope="col">Finished</th>
                      {loaded.overall.counts.map((c) => (
                        <th key={c.status} scope="col">
                          {label(c.status)}
                        </th>
                      ))}
                      <th scope="col">Success</th>
                      <th scope="col">p50</th>
                      <th scope="col">p95</th>
                      <th scope="col">Cost</th>
                    </tr>
                  </thead>
                  <tbody>
                    {loaded.scenarios.map((s) => (
                      <tr key={s.name} data-scenario-metrics={s.name}>
                        <th scope="row">
                          <a href={`#/executions?scenario=${encodeURIComponent(s.name)}`}>{s.name}</a>
                        </th>
                        <td data-finished>{s.metrics.finished}</td>
                        {s.metrics.counts.map((c) => (
                          <td key={c.status}>{c.count}</td>
                        ))}
                        <td>{percent(s.metrics.successRate)}</td>
                        <td>{duration(s.metrics.p50DurationMs)}</td>
                        <td>{duration(s.metrics.p95DurationMs)}</td>
                        <td>{cost(s.metrics.usage)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </>
          )}
        </>
      )}
    </section>
  );
}
