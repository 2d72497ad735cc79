// Hash routes (#/executions/ID): the server serves one page at `/`, and paths such as
// /executions/ID/events stay the API's.
import { useEffect, useState } from "react";

export type Route =
  | { page: "executions"; query: URLSearchParams }
  | { page: "execution"; id: string }
  | { page: "test"; scenario: string | null }
  | { page: "suites" }
  | { page: "suite"; name: string }
  | { page: "suite-run"; id: string; query: URLSearchParams }
  | { page: "batch"; id: string }
  | { page: "reviews" }
  | { page: "metrics"; query: URLSearchParams }
  | { page: "not-found"; path: string };

export function parse(hash: string): Route {
  const [path, search = ""] = hash.replace(/^#/, "").split("?", 2);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0 || (parts.length === 1 && parts[0] === "executions")) {
    return { page: "executions", query: new URLSearchParams(search) };
  }
  if (parts.length === 2 && parts[0] === "executions") return { page: "execution", id: parts[1] };
  if (parts[0] === "test" && parts.length <= 2) return { page: "test", scenario: parts[1] ?? null };
  if (parts[0] === "suites" && parts.length <= 2) {
    return parts.length === 1 ? { page: "suites" } : { page: "suite", name: parts[1] };
  }
  if (parts.length === 2 && parts[0] === "suite-runs") {
    return { page: "suite-run", id: parts[1], query: new URLSearchParams(search) };
  }
  if (parts.length === 2 && parts[0] === "batches") return { page: "batch", id: parts[1] };
  if (parts.length === 1 && parts[0] === "reviews") return { page: "reviews" };
  if (parts.length === 1 && parts[0] === "metrics") return { page: "metrics", query: new URLSearchParams(search) };
  return { page: "not-found", path };
}

export function href(route: { page: "execution"; id: string } | { page: "executions" }): string {
  return route.page === "execution" ? `#/executions/${encodeURIComponent(route.id)}` : "#/executions";
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(window.location.hash));
  useEffect(() => {
    const changed = () => setRoute(parse(window.location.hash));
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return route;
}
