// Drives a running Runwire server the way a frontend would, from Node: HTTP with fetch for
// mutations and queries, graphql-transport-ws (the npm graphql-ws client on the ws package) for
// subscriptions, with the documents in schema/operations/. It asserts nothing itself: it prints
// one JSON line per observation and tests/api/test_node_client.py judges them, so a bug here
// cannot make the test pass.
//
// Environment (secrets never in argv or a URL):
//   RUNWIRE_URL         http://host:port of the server
//   RUNWIRE_TOKEN       an API token that may start and read executions
//   RUNWIRE_BAD_TOKEN   a token the server must refuse
//   RUNWIRE_DEFINITION  the inline definition to run; it must write output for about a second,
//                       so that a second subscriber can join while it runs

import { readFile } from "node:fs/promises";
import net from "node:net";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const OPERATIONS = new URL("../../schema/operations/", import.meta.url);
const BASE = requiredEnv("RUNWIRE_URL");
const TOKEN = requiredEnv("RUNWIRE_TOKEN");
const BAD_TOKEN = requiredEnv("RUNWIRE_BAD_TOKEN");
const DEFINITION = requiredEnv("RUNWIRE_DEFINITION");
const SOCKET_URL = `${BASE.replace(/^http/, "ws")}/graphql`;
// The second subscriber joins once the first has seen this seq: past the start, mid-output.
const JOIN_AFTER_SEQ = 5;
const DEADLINE_MS = 60_000;

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function report(check, observed) {
  process.stdout.write(`${JSON.stringify({ check, ...observed })}\n`);
}

async function operation(name) {
  const query = await readFile(new URL(`${name}.graphql`, OPERATIONS), "utf8");
  return { operationName: name, query };
}

async function overHttp(name, variables, token = TOKEN) {
  const response = await fetch(`${BASE}/graphql`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify({ ...(await operation(name)), variables }),
  });
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // Kept as text below: the test shows what the server sent.
  }
  return { status: response.status, body, text };
}

function socketClient(token, onPong = () => {}, url = SOCKET_URL) {
  return createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: `Bearer ${token}` },
    // A refusal is final here; by default the client retries, since 4403 may be temporary.
    retryAttempts: 0,
    // Pings every 100 ms, so the server's pongs are seen within one execution.
    keepAlive: 100,
    on: { pong: (received) => onPong(received) },
  });
}

// One subscription to its end: every batch, how it ended, and what the error said if any.
async function follow(client, executionId, afterSeq, onBatch = () => {}) {
  const batches = [];
  const variables = { executionId, afterSeq };
  const request = { ...(await operation("FollowExecutionEvents")), variables };
  return new Promise((resolve) => {
    client.subscribe(request, {
      next(result) {
        if (result.errors) {
          batches.push({ errors: result.errors });
          return;
        }
        const batch = result.data.executionEvents;
        const seen = {
          lastSeq: batch.lastSeq,
          seqs: batch.events.map((event) => event.seq),
          types: batch.events.map((event) => event.__typename),
          executionStatuses: batch.events
            .filter((event) => event.__typename === "ExecutionStatusChanged")
            .map((event) => event.executionStatus),
        };
        batches.push(seen);
        onBatch(seen);
      },
      complete: () => resolve({ afterSeq, ended: "complete", batches }),
      error: (error) => resolve({ afterSeq, ended: "error", batches, error: describe(error) }),
    });
  });
}

// The resume pattern docs/building-a-frontend.md recommends: graphql-ws sends the same payload
// object again when it reconnects, so keeping variables.afterSeq at the last seq received turns
// the reconnect into a resume. Every seq the server sent is kept, duplicates included.
async function followAcrossReconnects(client, executionId, onSeq) {
  const variables = { executionId, afterSeq: 0 };
  const request = { ...(await operation("FollowExecutionEvents")), variables };
  const received = [];
  return new Promise((resolve) => {
    client.subscribe(request, {
      next(result) {
        for (const event of result.data?.executionEvents.events ?? []) {
          received.push(event.seq);
          variables.afterSeq = Math.max(variables.afterSeq, event.seq);
          onSeq(event.seq);
        }
      },
      complete: () => resolve({ ended: "complete", received }),
      error: (error) => resolve({ ended: "error", received, error: describe(error) }),
    });
  });
}

// Any request to its end: what `next` got, and how it ended.
function subscribeOnce(client, request) {
  const nexts = [];
  return new Promise((resolve) => {
    client.subscribe(request, {
      next: (result) => nexts.push(result),
      complete: () => resolve({ ended: "complete", nexts }),
      error: (error) => resolve({ ended: "error", nexts, error: describe(error) }),
    });
  });
}

// A TCP proxy to the server whose connections can be cut, as a network drop would.
async function cuttableProxy() {
  const target = new URL(BASE);
  const open = new Set();
  const proxy = net.createServer((downstream) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const [from, to] of [[downstream, upstream], [upstream, downstream]]) {
      open.add(from);
      from.pipe(to);
      from.on("error", () => {});
      from.on("close", () => {
        open.delete(from);
        to.destroy();
      });
    }
  });
  await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  return {
    url: `ws://127.0.0.1:${proxy.address().port}/graphql`,
    cut: () => open.forEach((socket) => socket.destroy()),
    close: () => new Promise((resolve) => proxy.close(resolve)),
  };
}

// A CloseEvent, a list of GraphQL errors (an `error` message), or an Error, as plain JSON.
function describe(error) {
  if (Array.isArray(error)) return { graphqlErrors: error };
  if (typeof error?.code === "number") {
    return { closeCode: error.code, closeReason: error.reason };
  }
  return { thrown: String(error?.message ?? error) };
}

async function main() {
  const started = await overHttp("StartExecution", { input: { definition: DEFINITION } });
  const execution = started.body?.data?.startExecution;
  report("start", { status: started.status, result: execution });
  if (execution?.__typename !== "StartExecutionSuccess") throw new Error(started.text);
  const executionId = execution.execution.id;

  // The first subscriber follows from the beginning; the second joins while the execution
  // still runs, resuming after the last seq the first had seen, as a reconnecting client would.
  let pongs = 0;
  const client = socketClient(TOKEN, (received) => {
    if (received) pongs += 1;
  });
  const lateClient = socketClient(TOKEN);
  let late = null;
  let terminalSeenBeforeJoin = null;
  const first = await follow(client, executionId, 0, (batch) => {
    const seen = batch.seqs.at(-1);
    if (late === null && seen >= JOIN_AFTER_SEQ) {
      terminalSeenBeforeJoin = batch.executionStatuses.some(isTerminal);
      late = follow(lateClient, executionId, seen);
    }
  });
  report("follow", first);
  const joined = late === null ? null : await late;
  report("late_join", { ...joined, terminalSeenBeforeJoin });
  report("ping_pong", { pongs });

  // After the end: a resume gets only what it missed, and a resume at the end gets nothing.
  const got = await overHttp("GetExecution", { id: executionId });
  const stored = got.body?.data?.execution;
  const { status, lastSeq } = stored ?? {};
  report("get", { status: got.status, execution: stored && { status, lastSeq } });
  report("resume_after_end", await follow(client, executionId, lastSeq - 3));
  report("resume_at_end", await follow(client, executionId, lastSeq));

  // Typed errors: an expected failure is a result type; a subscription to nothing is an error.
  const unknown = await overHttp("StartExecution", { input: { scenario: "does-not-exist" } });
  report("unknown_scenario", {
    status: unknown.status,
    result: unknown.body?.data?.startExecution,
    raw: unknown.text,
  });
  report("follow_missing", await follow(client, "no-such-execution", 0));
  // A document that cannot run: an `error` message, which the client gives `error` as a list.
  report("syntax_error", await subscribeOnce(client, { query: "subscription { executionEvents(" }));
  report("empty_query", await subscribeOnce(client, { query: "" }));
  await Promise.all([client.dispose(), lateClient.dispose()]);

  // A dropped connection mid-execution: graphql-ws reconnects by itself and resubscribes.
  const again = await overHttp("StartExecution", { input: { definition: DEFINITION } });
  const againId = again.body?.data?.startExecution?.execution?.id;
  if (!againId) throw new Error(again.text);
  const proxy = await cuttableProxy();
  let connections = 0;
  let cutAfterSeq = null;
  const reconnecting = createClient({
    url: proxy.url,
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: `Bearer ${TOKEN}` },
    retryWait: () => new Promise((resolve) => setTimeout(resolve, 100)),
    on: { connected: () => (connections += 1) },
  });
  const across = await followAcrossReconnects(reconnecting, againId, (seq) => {
    if (cutAfterSeq === null && seq >= JOIN_AFTER_SEQ) {
      cutAfterSeq = seq;
      proxy.cut();
    }
  });
  report("reconnect", { executionId: againId, cutAfterSeq, connections, ...across });
  await reconnecting.dispose();
  await proxy.close();

  // A bad token: the socket is closed at connection_init, and HTTP answers 401.
  const refused = socketClient(BAD_TOKEN);
  report("bad_token_socket", await follow(refused, executionId, 0));
  await refused.dispose();
  const refusedHttp = await overHttp("GetExecution", { id: executionId }, BAD_TOKEN);
  report("bad_token_http", { status: refusedHttp.status, raw: refusedHttp.text });
}

function isTerminal(status) {
  return ["SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"].includes(status);
}

const deadline = setTimeout(() => {
  report("fatal", { message: `not done within ${DEADLINE_MS} ms` });
  process.exit(1);
}, DEADLINE_MS);
try {
  await main();
  clearTimeout(deadline);
} catch (error) {
  report("fatal", { message: String(error?.stack ?? error) });
  process.exit(1);
}
