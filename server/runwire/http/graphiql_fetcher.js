// Runwire's GraphiQL fetcher, inlined into the /graphql page by runwire.http.graphiql.
//
// GraphiQL's stock fetcher shows only a subscription's latest message (each replaces the last),
// and its graphql-ws client retries a socket the server refused (4403) for about 45 s with the
// spinner on. This one keeps every payload of a subscription (the pane shows them in arrival
// order, the newest last) and reports a refused token, an unreachable server or an HTTP error
// at once, in words. Queries and mutations go over HTTP with the Headers pane's headers;
// subscriptions over graphql-transport-ws with those headers as the connection_init payload.
"use strict";

window.RunwireGraphiQL = (function () {
  // The pane re-renders everything kept on each message: past this many, the oldest go.
  const KEPT = 500;
  const SIGN_IN = 'put {"Authorization": "Bearer <token>"} in the Headers pane below';

  function failure(message) {
    return { errors: [{ message: message }] };
  }

  function isSubscription(params, options) {
    const documentAST = options && options.documentAST;
    if (!documentAST) return false;
    const operations = documentAST.definitions.filter(
      (definition) => definition.kind === "OperationDefinition",
    );
    const named = params.operationName;
    const operation = named
      ? operations.find((o) => o.name && o.name.value === named)
      : operations[0];
    return Boolean(operation) && operation.operation === "subscription";
  }

  async function overHttp(url, params, headers) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: Object.assign(
          { "Content-Type": "application/json", Accept: "application/json" },
          headers,
        ),
        body: JSON.stringify(params),
        credentials: "same-origin",
      });
    } catch (error) {
      return failure("cannot reach " + url + ": " + error.message);
    }
    const text = await response.text();
    let body = null;
    try {
      body = JSON.parse(text);
    } catch (error) {
      body = null;
    }
    if (response.ok && body !== null) return body;
    const detail = (body && (body.detail || body.message)) || text || response.statusText;
    if (response.status === 401) {
      return failure("not signed in (HTTP 401): " + detail + "; " + SIGN_IN);
    }
    if (body !== null && ("data" in body || "errors" in body)) return body;
    return failure("HTTP " + response.status + ": " + detail);
  }

  function closedWith(event, url, acknowledged) {
    if (event.code === 4403 && !acknowledged) {
      return (
        "the server refused the token (4403 Forbidden): it is missing, wrong, revoked or" +
        " expired; " +
        SIGN_IN
      );
    }
    if (event.code === 4403) return "the server ended the subscription: " + event.reason;
    if (event.code === 1013) return "the service is unavailable (1013); try again later";
    if (event.code === 1006 && !acknowledged) return "cannot reach " + url;
    const reason = event.reason ? " " + event.reason : "";
    return "the socket closed with " + event.code + reason;
  }

  // One socket per run: GraphiQL runs one operation at a time, and stopping it (or running
  // another) calls `return`, which completes the subscription and closes the socket.
  function overSocket(url, params, headers) {
    const received = [];
    let dropped = 0;
    let ended = false;
    let pending = false; // something arrived that the pane has not been given yet
    let wake = null;
    let acknowledged = false;
    const socket = new WebSocket(url, "graphql-transport-ws");

    function changed() {
      pending = true;
      if (wake !== null) {
        const resolve = wake;
        wake = null;
        resolve();
      }
    }
    function keep(payload) {
      received.push(payload);
      if (received.length > KEPT) {
        received.shift();
        dropped += 1;
      }
      changed();
    }
    function end() {
      if (ended) return;
      ended = true;
      changed();
    }
    function send(message) {
      if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
    }

    socket.onopen = () => send({ type: "connection_init", payload: headers });
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "connection_ack") {
        acknowledged = true;
        send({ id: "1", type: "subscribe", payload: params });
      } else if (message.type === "ping") {
        send({ type: "pong" });
      } else if (message.type === "next") {
        keep(message.payload);
      } else if (message.type === "error") {
        keep({ errors: message.payload });
        end();
        socket.close(1000);
      } else if (message.type === "complete") {
        end();
        socket.close(1000);
      }
    };
    socket.onclose = (event) => {
      if (!ended && event.code !== 1000) keep(failure(closedWith(event, url, acknowledged)));
      end();
    };

    function shown() {
      // A lone error (a refused token, a bad query) is shown as it is; results as a list.
      if (received.length === 1 && dropped === 0 && received[0].data === undefined) {
        return received[0];
      }
      const shownNow = { received: received.length + dropped, results: received.slice() };
      if (dropped) shownNow.note = "the first " + dropped + " results are no longer shown";
      return shownNow;
    }

    const iterator = {
      async next() {
        while (!pending && !ended) {
          await new Promise((resolve) => {
            wake = resolve;
          });
        }
        if (!pending) return { done: true, value: undefined };
        pending = false;
        return { done: false, value: shown() };
      },
      async return() {
        if (!ended) {
          ended = true;
          if (acknowledged) send({ id: "1", type: "complete" });
          socket.close(1000);
        }
        pending = false;
        changed();
        return { done: true, value: undefined };
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
    return iterator;
  }

  // The fetcher GraphiQL calls: `headers` are sent with every operation, under the Headers
  // pane's own.
  function fetcher(options) {
    return function (params, fetcherOptions) {
      const headers = Object.assign(
        {},
        options.headers,
        (fetcherOptions && fetcherOptions.headers) || {},
      );
      if (isSubscription(params, fetcherOptions)) {
        return overSocket(options.subscriptionUrl, params, headers);
      }
      return overHttp(options.url, params, headers);
    };
  }

  // The Authorization header in the Headers pane's text, or undefined while it is not JSON.
  function authorizationIn(text) {
    if (!text || !text.trim()) return null;
    try {
      const parsed = JSON.parse(text);
      if (parsed === null || typeof parsed !== "object") return undefined;
      const key = Object.keys(parsed).find((name) => name.toLowerCase() === "authorization");
      return key === undefined ? null : String(parsed[key]);
    } catch (error) {
      return undefined;
    }
  }

  return { fetcher: fetcher, authorizationIn: authorizationIn };
})();
