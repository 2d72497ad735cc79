import { label } from "../format";

/** A status as a word (never colour alone); RUNNING also wears the pulsing Live badge. */
export function StatusBadge({ status }: { status: string }) {
  return (
    <span className="status-cell">
      <span className={`status status-${status.toLowerCase()}`}>{label(status)}</span>
      {status === "RUNNING" && (
        <span className="live" data-live="true" title="Running now">
          <span className="live-dot" aria-hidden="true" />
          Live
        </span>
      )}
    </span>
  );
}
