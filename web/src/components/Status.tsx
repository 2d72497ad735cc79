import { label } from "../format";

/** A status as a word (never colour alone); a running execution also wears the pulsing Live badge. */
export function StatusBadge({ status, live = true }: { status: string; live?: boolean }) {
  return (
    <span className="status-cell">
      <span className={`status status-${status.toLowerCase()}`}>{label(status)}</span>
      {live && status === "RUNNING" && (
        <span className="live" data-live="true" title="Running now">
          <span className="live-dot" aria-hidden="true" />
          Live
        </span>
      )}
    </span>
  );
}
