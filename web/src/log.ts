// The execution log as lines: output split at line breaks, typed agent entries, call events and
// status markers, each tagged with the seq of the event it came from.
import type { FollowExecutionEventsSubscription } from "./gql/graphql";

export type Event = FollowExecutionEventsSubscription["executionEvents"]["events"][number];

export type LineKind =
  | "stdout"
  | "stderr"
  | "agent"
  | "call"
  | "step"
  | "execution"
  | "usage"
  | "warning"
  | "span";

export type Line = { seq: number; kind: LineKind; step: string | null; text: string; tag?: string };

export class LogModel {
  readonly lines: Line[] = [];
  counts: Record<string, number> = {};
  lastSeq = 0;
  duplicates = 0;
  // A line still open (its chunk ended mid-line), per step and stream.
  private open = new Map<string, Line>();

  /** Apply a batch; events at or below the last seq seen are dropped (a resumed subscription). */
  apply(events: readonly Event[]): Event[] {
    const fresh: Event[] = [];
    for (const event of events) {
      if (event.seq <= this.lastSeq) {
        this.duplicates += 1;
        continue;
      }
      this.lastSeq = event.seq;
      fresh.push(event);
      this.add(event);
    }
    return fresh;
  }

  private push(line: Line): void {
    this.lines.push(line);
    this.counts[line.kind] = (this.counts[line.kind] ?? 0) + 1;
  }

  private add(event: Event): void {
    const step = event.stepKey ?? null;
    switch (event.__typename) {
      case "OutputChunk": {
        const kind = event.stream === "stderr" ? "stderr" : "stdout";
        const key = `${step}\u0000${kind}`;
        const parts = event.text.split("\n");
        const ended = parts[parts.length - 1] === "";
        if (ended) parts.pop();
        parts.forEach((text, index) => {
          const pending = index === 0 ? this.open.get(key) : undefined;
          if (pending !== undefined) pending.text += text;
          else this.push({ seq: event.seq, kind, step, text });
        });
        if (ended || parts.length === 0) this.open.delete(key);
        else this.open.set(key, this.lines[this.lines.length - 1]);
        return;
      }
      case "AgentEntryReported": {
        const tag = event.entry.toLowerCase().replace(/_/g, " ");
        const text =
          event.entry === "TOOL_CALL"
            ? `${event.tool ?? "tool"}(${compact(event.data)})`
            : event.entry === "TOOL_RESULT"
              ? `${event.isError ? "error: " : ""}${event.entryText ?? compact(event.data)}`
              : (event.entryText ?? compact(event.data));
        this.push({ seq: event.seq, kind: "agent", step, text, tag });
        return;
      }
      case "CallEventReported": {
        const bits = [
          event.call.toLowerCase().replace(/_/g, " "),
          event.digits && `DTMF ${event.digits}`,
          event.callText && `“${event.callText}”`,
          event.transcript && `heard “${event.transcript}”`,
          event.confidence !== null && `confidence ${event.confidence.toFixed(2)}`,
          event.matched && `matched ${event.matched}`,
          event.latencyMs !== null && `${Math.round(event.latencyMs)} ms`,
          event.reason,
        ].filter(Boolean);
        this.push({ seq: event.seq, kind: "call", step, text: bits.join(" · "), tag: "call" });
        return;
      }
      case "StepStatusChanged":
        this.push({
          seq: event.seq,
          kind: "step",
          step,
          text: `step ${step} ${event.stepStatus.toLowerCase()}${event.attempt && event.attempt > 1 ? ` (attempt ${event.attempt})` : ""}${event.exitCode !== null ? `, exit ${event.exitCode}` : ""}${event.error ? `: ${event.error}` : ""}`,
        });
        return;
      case "ExecutionStatusChanged":
        this.push({
          seq: event.seq,
          kind: "execution",
          step,
          text: `execution ${event.executionStatus.toLowerCase()}${event.error ? `: ${event.error}` : ""}${event.reason ? ` (${event.reason})` : ""}`,
        });
        return;
      case "OutputTruncated":
        this.push({ seq: event.seq, kind: "warning", step, text: event.message });
        return;
      case "UsageReported":
        this.push({
          seq: event.seq,
          kind: "usage",
          step,
          text: `${event.model ?? "model"}: ${event.tokensInput} in / ${event.tokensOutput} out${event.costUsd !== null ? `, $${event.costUsd.toFixed(4)}` : ""}${event.ttftMs !== null ? `, first token ${Math.round(event.ttftMs)} ms` : ""}`,
        });
        return;
      default:
        return;
    }
  }
}

function compact(value: unknown): string {
  if (value === null || value === undefined) return "";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > 400 ? `${text.slice(0, 400)}…` : text;
}
