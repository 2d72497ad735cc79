import { useEffect, useId, useMemo, useRef, useState, type FormEvent } from "react";
import { ApiError } from "../api";
import { StatusBadge } from "../components/Status";
import { useSession } from "../context";
import { cost, duration, elapsed, when, useNow } from "../format";
import {
  ConsoleExecutionUpdatesDocument,
  ConsoleExecutionsDocument,
  ConsoleQueuedDocument,
  ConsoleStepProgressDocument,
  ListScenariosDocument,
  type ExecutionFilter,
  type ExecutionRowFragment,
  type ExecutionStatus,
  type StepStatus,
} from "../gql/graphql";
import { href } from "../router";

const PAGE_SIZE = 25;
const STATUSES: ExecutionStatus[] = [
  "QUEUED",
  "RUNNING",
  "PAUSING",
  "PAUSED",
  "WAITING",
  "STOPPING",
  "SUCCEEDED",
  "FAILED",
  "CANCELLED",
  "TIMED_OUT",
];
const WINDOWS: Record<string, number> = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };
const FINISHED = new Set(["SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "SKIPPED"]);

type Filters = {
  status: string;
  scenario: string;
  label: string;
  who: string;
  since: string;
  search: string;
};

function filtersOf(query: URLSearchParams): Filters {
  return {
    status: query.get("status") ?? "",
    scenario: query.get("scenario") ?? "",
    label: query.get("label") ?? "",
    who: query.get("who") ?? "",
    since: query.get("since") ?? "",
    search: query.get("search") ?? "",
  };
}

function apiFilter(filters: Filters): ExecutionFilter {
  const filter: ExecutionFilter = {};
  if (filters.status) filter.statuses = [filters.status as ExecutionStatus];
  if (filters.scenario) filter.scenario = filters.scenario;
  if (filters.label) filter.label = filters.label;
  if (filters.who) filter.triggeredBy = filters.who;
  if (filters.search) filter.search = filters.search;
  if (filters.since in WINDOWS) {
    filter.queuedAfter = new Date(Date.now() - WINDOWS[filters.since]).toISOString();
  }
  return filter;
}

/** "3 of 7": steps finished (their latest attempt ended) of the distinct steps. */
export function progress(steps: ExecutionRowFragment["steps"]): { done: number; total: number } {
  const latest = new Map<string, { attempt: number; status: string }>();
  for (const step of steps) {
    const seen = latest.get(step.key);
    if (seen === undefined || step.attempt >= seen.attempt) latest.set(step.key, step);
  }
  let done = 0;
  for (const step of latest.values()) if (FINISHED.has(step.status)) done += 1;
  return { done, total: latest.size };
}

function newestFirst(a: ExecutionRowFragment, b: ExecutionRowFragment): number {
  return b.queuedAt.localeCompare(a.queuedAt) || b.id.localeCompare(a.id);
}

/** Each queued execution's place in the claim order: higher priority first, then the oldest. */
function useQueuePositions(): Map<string, number> {
  const { api } = useSession();
  const [queued, setQueued] = useState(
    () => new Map<string, { priority: number; queuedAt: string }>(),
  );
  useEffect(() => {
    const controller = new AbortController();
    const unsubscribe = api.subscribe(
      ConsoleExecutionUpdatesDocument,
      () => ({ filter: { statuses: ["QUEUED" as ExecutionStatus] } }),
      {
        subscribed: () => {
          // Subscribed first, then read: a change in between is in the feed.
          api.request(ConsoleQueuedDocument, { first: 500 }, controller.signal).then(
            (data) =>
              setQueued((current) => {
                const next = new Map(current);
                for (const { node } of data.executions.edges) next.set(node.id, node);
                return next;
              }),
            () => {},
          );
        },
        next: ({ executionUpdates: update }) =>
          setQueued((current) => {
            const next = new Map(current);
            if (update.execution.status === "QUEUED") next.set(update.execution.id, update.execution);
            else next.delete(update.execution.id);
            return next;
          }),
      },
    );
    return () => {
      controller.abort();
      unsubscribe();
    };
  }, [api]);
  return useMemo(() => {
    const order = [...queued.entries()].sort(
      ([aId, a], [bId, b]) =>
        b.priority - a.priority || a.queuedAt.localeCompare(b.queuedAt) || aId.localeCompare(bId),
    );
    return new Map(order.map(([id], index) => [id, index + 1]));
  }, [queued]);
}

type LiveStep = { key: string; attempt: number; status: StepStatus };

// Live step progress for at most this many running rows (one small subscription each).
const LIVE_PROGRESS_ROWS = 10;

/**
 * The step status changes of the running rows in view, so their "3 of 7" moves as steps end
 * (executionUpdates speaks only of the execution's own status). Keyed by execution id: each
 * step's latest known status by key and attempt.
 */
function useStepProgress(running: string[], since: Map<string, number>) {
  const { api } = useSession();
  const [steps, setSteps] = useState(new Map<string, Map<string, LiveStep>>());
  const key = running.slice(0, LIVE_PROGRESS_ROWS).sort().join(",");
  const sinceRef = useRef(since);
  sinceRef.current = since;
  useEffect(() => {
    if (!key) return;
    const stops = key.split(",").map((id) => {
      let last = sinceRef.current.get(id) ?? 0;
      return api.subscribe(ConsoleStepProgressDocument, () => ({ executionId: id, afterSeq: last }), {
        next: ({ executionEvents }) => {
          const changes = executionEvents.events.filter((event) => event.seq > last);
          last = Math.max(last, executionEvents.lastSeq);
          const stepChanges = changes.flatMap((event) =>
            event.__typename === "StepStatusChanged" && event.stepKey
              ? [{ key: event.stepKey, attempt: event.attempt ?? 1, status: event.stepStatus }]
              : [],
          );
          if (stepChanges.length === 0) return;
          setSteps((current) => {
            const next = new Map(current);
            const known = new Map(next.get(id) ?? []);
            for (const change of stepChanges) known.set(`${change.key}:${change.attempt}`, change);
            next.set(id, known);
            return next;
          });
        },
      });
    });
    return () => stops.forEach((stop) => stop());
  }, [api, key]);
  return steps;
}

/** A row's steps with the live changes seen since its row was read. */
function withLive(
  row: ExecutionRowFragment,
  live: Map<string, Map<string, LiveStep>>,
): ExecutionRowFragment["steps"] {
  const changes = live.get(row.id);
  if (changes === undefined) return row.steps;
  const merged = new Map(row.steps.map((step) => [`${step.key}:${step.attempt}`, step]));
  // A step's status only moves forward (pending, running, ended), so of the row's copy and the
  // live one, the further along is the newer, whichever was read last.
  for (const [id, change] of changes) {
    const read = merged.get(id);
    if (read === undefined || rank(change.status) > rank(read.status)) merged.set(id, change);
  }
  return [...merged.values()];
}

function rank(status: string): number {
  return status === "PENDING" ? 0 : FINISHED.has(status) ? 2 : 1;
}

export function ExecutionsPage({ query }: { query: URLSearchParams }) {
  const { api } = useSession();
  const filters = filtersOf(query);
  const filterKey = JSON.stringify(filters);
  // Keyset paging: the cursors of the pages before this one (empty on the newest page).
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const after = cursors[cursors.length - 1];
  const [rows, setRows] = useState<ExecutionRowFragment[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const positions = useQueuePositions();
  const now = useNow(rows?.some((row) => row.status === "RUNNING") ?? false);
  const running = (rows ?? []).filter((row) => row.status === "RUNNING");
  const liveSteps = useStepProgress(
    running.map((row) => row.id),
    new Map(running.map((row) => [row.id, row.lastSeq])),
  );

  useEffect(() => setCursors([null]), [filterKey]);

  useEffect(() => {
    const filter = apiFilter(JSON.parse(filterKey) as Filters);
    const controller = new AbortController();
    setRows(null);
    setError(null);
    const unsubscribe = api.subscribe(ConsoleExecutionUpdatesDocument, () => ({ filter }), {
      // Subscribe first, then read the page (again after a reconnect): nothing falls between.
      subscribed: () => {
        api.request(ConsoleExecutionsDocument, { filter, first: PAGE_SIZE, after }, controller.signal).then(
          (data) => {
            setRows((current) => merge(current ?? [], data.executions.edges.map((e) => e.node), true));
            setNext(data.executions.pageInfo.hasNextPage ? data.executions.pageInfo.endCursor : null);
          },
          (caught: unknown) => {
            if (!controller.signal.aborted) {
              setError(caught instanceof ApiError ? caught.message : String(caught));
            }
          },
        );
      },
      next: ({ executionUpdates: update }) =>
        setRows((current) => (current === null ? current : merge(current, [update.execution], after === null))),
      error: (caught) => setError(caught.message),
    });
    return () => {
      controller.abort();
      unsubscribe();
    };
  }, [api, filterKey, after]);

  return (
    <section aria-labelledby="executions-title">
      <h1 id="executions-title">Executions</h1>
      <FilterBar filters={filters} />
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {rows === null ? (
        <p aria-busy="true">Loading…</p>
      ) : rows.length === 0 ? (
        <p className="muted">No executions match.</p>
      ) : (
        <div className="table-wrap">
          <table className="executions">
            <caption className="visually-hidden">Executions, newest first, updated live</caption>
            <thead>
              <tr>
                <th scope="col">Execution</th>
                <th scope="col">Status</th>
                <th scope="col">Steps</th>
                <th scope="col">Duration</th>
                <th scope="col">Cost</th>
                <th scope="col">Queued</th>
                <th scope="col">Labels</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((row) => {
                const steps = progress(withLive(row, liveSteps));
                const position = positions.get(row.id);
                return (
                  <tr key={row.id} data-execution={row.id} data-status={row.status}>
                    <td>
                      <a href={href({ page: "execution", id: row.id })}>{row.name}</a>
                      <div className="muted small">
                        {row.scenario ? `${row.scenario.name} v${row.scenario.version}` : "inline"}
                        {row.mode !== "FULL" && ` · ${row.mode.toLowerCase().replace(/_/g, " ")}`}
                      </div>
                    </td>
                    <td>
                      <StatusBadge status={row.status} />
                      {row.status === "QUEUED" && position !== undefined && (
                        <div className="muted small" data-queue-position={position}>
                          #{position} in queue
                        </div>
                      )}
                    </td>
                    <td data-progress={`${steps.done}/${steps.total}`}>
                      {steps.total === 0 ? "—" : `${steps.done} of ${steps.total}`}
                    </td>
                    <td>{duration(elapsed(row.startedAt, row.finishedAt, row.durationMs, now))}</td>
                    <td>{cost(row.usage)}</td>
                    <td>{when(row.queuedAt)}</td>
                    <td>
                      {row.labels.map((text) => (
                        <span key={text} className="tag">
                          {text}
                        </span>
                      ))}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      <nav className="pager" aria-label="Pages">
        <button
          type="button"
          className="secondary"
          disabled={cursors.length <= 1}
          onClick={() => setCursors((list) => list.slice(0, -1))}
        >
          ← Newer
        </button>
        <button type="button" className="secondary" disabled={cursors.length <= 1} onClick={() => setCursors([null])}>
          Newest
        </button>
        <button
          type="button"
          className="secondary"
          disabled={next === null}
          onClick={() => setCursors((list) => [...list, next])}
        >
          Older →
        </button>
      </nav>
    </section>
  );
}

/** Apply rows (a page read, or an update) by lastSeq: an older copy never replaces a newer one. */
function merge(
  current: ExecutionRowFragment[],
  incoming: ExecutionRowFragment[],
  addNew: boolean,
): ExecutionRowFragment[] {
  const byId = new Map(current.map((row) => [row.id, row]));
  let changed = false;
  for (const row of incoming) {
    const seen = byId.get(row.id);
    if (seen === undefined ? addNew : row.lastSeq >= seen.lastSeq) {
      byId.set(row.id, row);
      changed = true;
    }
  }
  if (!changed && current.length > 0) return current;
  return [...byId.values()].sort(newestFirst);
}

function FilterBar({ filters }: { filters: Filters }) {
  const { api } = useSession();
  const [draft, setDraft] = useState(filters);
  const [scenarios, setScenarios] = useState<string[]>([]);
  const id = useId();
  useEffect(() => setDraft(filters), [JSON.stringify(filters)]); // eslint-disable-line react-hooks/exhaustive-deps
  useEffect(() => {
    api.request(ListScenariosDocument, {}).then(
      (data) => setScenarios(data.scenarios.map((s) => s.name)),
      () => {},
    );
  }, [api]);

  function apply(next: Filters) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(next)) if (value) params.set(key, value);
    const text = params.toString();
    window.location.hash = `#/executions${text ? `?${text}` : ""}`;
  }
  function submit(event: FormEvent) {
    event.preventDefault();
    apply(draft);
  }
  const set = (key: keyof Filters, immediate: boolean) => (value: string) => {
    const next = { ...draft, [key]: value };
    setDraft(next);
    if (immediate) apply(next);
  };

  return (
    <form className="filters" onSubmit={submit} role="search" aria-label="Filter executions">
      <div className="field">
        <label htmlFor={`${id}-search`}>Search</label>
        <input
          id={`${id}-search`}
          type="search"
          placeholder="name, label or error"
          value={draft.search}
          onChange={(event) => set("search", false)(event.target.value)}
        />
      </div>
      <div className="field">
        <label htmlFor={`${id}-status`}>Status</label>
        <select id={`${id}-status`} value={draft.status} onChange={(event) => set("status", true)(event.target.value)}>
          <option value="">Any</option>
          {STATUSES.map((status) => (
            <option key={status} value={status}>
              {status.charAt(0) + status.slice(1).toLowerCase().replace("_", " ")}
            </option>
          ))}
        </select>
      </div>
      <div className="field">
        <label htmlFor={`${id}-scenario`}>Scenario</label>
        <select
          id={`${id}-scenario`}
          value={draft.scenario}
          onChange={(event) => set("scenario", true)(event.target.value)}
        >
          <option value="">Any</option>
          {[...new Set([...scenarios, ...(draft.scenario ? [draft.scenario] : [])])].map((name) => (
            <option key={name} value={name}>
              {name}
            </option>
          ))}
        </select>
      </div>
      <div className="field">
        <label htmlFor={`${id}-label`}>Label</label>
        <input
          id={`${id}-label`}
          value={draft.label}
          onChange={(event) => set("label", false)(event.target.value)}
        />
      </div>
      <div className="field">
        <label htmlFor={`${id}-who`}>Started by</label>
        <input
          id={`${id}-who`}
          placeholder="token:ci"
          value={draft.who}
          onChange={(event) => set("who", false)(event.target.value)}
        />
      </div>
      <div className="field">
        <label htmlFor={`${id}-since`}>Queued</label>
        <select id={`${id}-since`} value={draft.since} onChange={(event) => set("since", true)(event.target.value)}>
          <option value="">Any time</option>
          <option value="1h">Last hour</option>
          <option value="24h">Last 24 hours</option>
          <option value="7d">Last 7 days</option>
        </select>
      </div>
      <button type="submit">Apply</button>
    </form>
  );
}
