import { useEffect, useState } from "react";
import { useSession } from "../context";
import { duration } from "../format";
import { ExecutionTraceDocument, type ExecutionTraceQuery } from "../gql/graphql";

type Trace = NonNullable<ExecutionTraceQuery["execution"]>["trace"];
type Span = Trace["spans"][number];

/** The trace as a waterfall: one bar per span, placed on the execution's timeline, nested by parent. */
export function Trace({ id, version }: { id: string; version: number }) {
  const { api } = useSession();
  const [trace, setTrace] = useState<Trace | null>(null);
  useEffect(() => {
    const controller = new AbortController();
    api.request(ExecutionTraceDocument, { id }, controller.signal).then(
      (data) => setTrace(data.execution?.trace ?? null),
      () => {},
    );
    return () => controller.abort();
  }, [api, id, version]);
  const spans = (trace?.spans ?? []).filter((span): span is Span & { startedAt: string } => span.startedAt !== null);
  if (trace === null || spans.length === 0) return null;

  const starts = spans.map((span) => Date.parse(span.startedAt));
  const origin = Math.min(...starts);
  const end = Math.max(
    ...spans.map((span) =>
      span.finishedAt ? Date.parse(span.finishedAt) : Date.parse(span.startedAt) + (span.durationMs ?? 0),
    ),
  );
  const total = Math.max(1, end - origin);
  const depth = new Map<string, number>();
  const byId = new Map(trace.spans.map((span) => [span.id, span]));
  const depthOf = (span: Span): number => {
    const known = depth.get(span.id);
    if (known !== undefined) return known;
    const parent = span.parentId ? byId.get(span.parentId) : undefined;
    const value = parent && parent !== span ? Math.min(8, depthOf(parent) + 1) : 0;
    depth.set(span.id, value);
    return value;
  };
  const ordered = [...spans].sort((a, b) => a.startedAt.localeCompare(b.startedAt));

  return (
    <>
      <h2>Trace</h2>
      <p className="muted small">
        {spans.length} spans · {duration(trace.totalDurationMs)}
        {trace.tokens && trace.tokens.total > 0 && ` · ${trace.tokens.total} tokens`}
        {trace.cost !== null && trace.cost !== undefined && ` · $${trace.cost.toFixed(4)}`}
      </p>
      <ol className="waterfall" aria-label="Trace spans">
        {ordered.map((span) => {
          const start = Date.parse(span.startedAt) - origin;
          const length = span.durationMs ?? (span.finishedAt ? Date.parse(span.finishedAt) - Date.parse(span.startedAt) : 0);
          return (
            <li key={span.id} className="span-row">
              <span className="span-name" style={{ paddingLeft: `${depthOf(span)}em` }}>
                {span.name}
              </span>
              <span className="span-track">
                <span
                  className={`span-bar span-${span.status.toLowerCase()}`}
                  style={{ left: `${(start / total) * 100}%`, width: `max(2px, ${(length / total) * 100}%)` }}
                  title={`${span.name}: ${duration(length)}`}
                />
              </span>
              <span className="span-time">{duration(length)}</span>
            </li>
          );
        })}
      </ol>
    </>
  );
}
