import { useCallback, useEffect, useLayoutEffect, useRef, useState, type KeyboardEvent } from "react";
import type { LogModel } from "../log";

const ROW = 20; // px; every line is one row tall (long lines scroll sideways), so rows are computed
const OVERSCAN = 30;

/**
 * The log, virtualised: only the rows in view (and a margin) are in the DOM, however long the
 * log. It follows new lines while scrolled to the end; scrolling up pauses that, and "Jump to
 * live" resumes it.
 */
export function LogView({ log, version, live }: { log: LogModel; version: number; live: boolean }) {
  const box = useRef<HTMLDivElement>(null);
  const [following, setFollowing] = useState(true);
  const [view, setView] = useState({ top: 0, height: 400 });
  const previousTop = useRef(0);
  const total = log.lines.length;

  const toEnd = useCallback(() => {
    const element = box.current;
    if (element) element.scrollTop = element.scrollHeight;
  }, []);

  useLayoutEffect(() => {
    if (following) toEnd();
  }, [version, following, toEnd]);

  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const observer = new ResizeObserver(() =>
      setView({ top: element.scrollTop, height: element.clientHeight }),
    );
    observer.observe(element);
    return () => observer.disconnect();
  }, []);

  // The log's keys move it at once, not by the browser's smooth scroll: an animation still
  // running when the next key (or a new line) comes would carry the log on from where it was.
  function keyed(event: KeyboardEvent<HTMLDivElement>) {
    const element = box.current!;
    const page = element.clientHeight - ROW;
    const moves: Record<string, number> = {
      ArrowUp: -ROW,
      ArrowDown: ROW,
      PageUp: -page,
      PageDown: page,
      Home: -element.scrollHeight,
    };
    if (event.key === "End") {
      event.preventDefault();
      setFollowing(true);
      toEnd();
    } else if (event.key in moves) {
      event.preventDefault();
      if (moves[event.key] < 0) setFollowing(false);
      element.scrollTop += moves[event.key];
    }
  }

  function scrolled() {
    const element = box.current!;
    setView({ top: element.scrollTop, height: element.clientHeight });
    // Moved up: the person is reading, stay put. Moved down to the end (within a row): follow
    // again. Only a move up pauses: the scroll event of our own jump to the end can arrive after
    // more lines made the log taller, and must not read as the reader leaving the end.
    // Only a move down reaches the end again: the first frames of a smooth scroll up (Page Up)
    // are still within a row of it.
    const atEnd = element.scrollTop + element.clientHeight >= element.scrollHeight - ROW;
    if (element.scrollTop < previousTop.current - 1) setFollowing(false);
    else if (atEnd && element.scrollTop > previousTop.current) setFollowing(true);
    previousTop.current = element.scrollTop;
  }

  const first = Math.max(0, Math.floor(view.top / ROW) - OVERSCAN);
  const last = Math.min(total, Math.ceil((view.top + view.height) / ROW) + OVERSCAN);
  const rows = [];
  for (let index = first; index < last; index += 1) {
    const line = log.lines[index];
    rows.push(
      <div
        key={index}
        className={`line line-${line.kind}`}
        style={{ top: index * ROW }}
        data-seq={line.seq}
        data-index={index}
      >
        {line.step && <span className="line-step">{line.step}</span>}
        {line.tag && <span className="line-tag">{line.tag}</span>}
        <span className="line-text">{line.text}</span>
      </div>,
    );
  }

  return (
    <div className="log-wrap">
      <div
        ref={box}
        className="log"
        role="log"
        aria-label="Execution log"
        aria-live="off"
        tabIndex={0}
        onScroll={scrolled}
        // The reader's own moves up pause following at once, before a new line can pull the
        // log back to the end under them.
        onWheel={(event) => event.deltaY < 0 && setFollowing(false)}
        onTouchMove={() => setFollowing(false)}
        onKeyDown={keyed}
        data-following={following}
        data-lines={total}
        data-stdout-lines={log.counts.stdout ?? 0}
        data-stderr-lines={log.counts.stderr ?? 0}
        data-last-seq={log.lastSeq}
        data-duplicates={log.duplicates}
      >
        <div className="log-space" style={{ height: total * ROW }}>
          {rows}
        </div>
        {total === 0 && <p className="muted log-empty">No output yet.</p>}
      </div>
      {!following && (
        <button type="button" className="jump" onClick={() => setFollowing(true)}>
          {live ? "↓ Jump to live" : "↓ Jump to end"}
        </button>
      )}
    </div>
  );
}
