import { useEffect, useState } from "react";

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.floor(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** A run's duration: the stored one once ended, else the time since it started, ticking. */
export function elapsed(
  startedAt: string | null,
  finishedAt: string | null,
  durationMs: number | null,
  now: number,
): number | null {
  if (durationMs !== null) return durationMs;
  if (startedAt === null) return null;
  const end = finishedAt === null ? now : Date.parse(finishedAt);
  return Math.max(0, end - Date.parse(startedAt));
}

export function cost(usage: { costUsd: number | null; unpriced: number; calls: number }): string {
  if (usage.calls === 0) return "—";
  if (usage.costUsd === null) return `unpriced (${usage.unpriced})`;
  if (usage.costUsd < 0.01) return `$${usage.costUsd.toFixed(4)}`;
  return `$${usage.costUsd.toFixed(2)}`;
}

export function tokens(count: number): string {
  return count >= 10_000 ? `${(count / 1000).toFixed(1)}k` : String(Math.round(count));
}

export function when(iso: string | null): string {
  if (iso === null) return "—";
  return new Date(iso).toLocaleString(undefined, {
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

export function label(status: string): string {
  return status.charAt(0) + status.slice(1).toLowerCase().replace(/_/g, " ");
}

/** The current time, re-read every `everyMs` while `active`. */
export function useNow(active: boolean, everyMs = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!active) return;
    const timer = window.setInterval(() => setNow(Date.now()), everyMs);
    return () => window.clearInterval(timer);
  }, [active, everyMs]);
  return now;
}
