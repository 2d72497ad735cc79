// The console's one way to the API: queries and mutations over HTTP, subscriptions over one
// graphql-transport-ws socket, the token in the Authorization header and in connection_init.
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { print } from "graphql";
import { createClient, type Client } from "graphql-ws";

/** Why a request failed, in words a person can act on. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly kind: "unauthenticated" | "forbidden" | "not_found" | "network" | "graphql",
  ) {
    super(message);
  }
}

type GraphQLErrorShape = { message: string; extensions?: { code?: string } };

const printed = new WeakMap<object, string>();
function source(document: TypedDocumentNode<unknown, never>): string {
  let text = printed.get(document);
  if (text === undefined) {
    text = print(document);
    printed.set(document, text);
  }
  return text;
}

function errorOf(errors: GraphQLErrorShape[]): ApiError {
  const first = errors[0];
  const code = first.extensions?.code;
  const kind =
    code === "UNAUTHENTICATED"
      ? "unauthenticated"
      : code === "FORBIDDEN"
        ? "forbidden"
        : code === "NOT_FOUND"
          ? "not_found"
          : "graphql";
  return new ApiError(errors.map((e) => e.message).join("; "), kind);
}

export class Api {
  private socket: Client | null = null;
  private listeners = new Set<(connected: boolean) => void>();
  // Subscriptions in progress: the lazy socket closes by itself when the last one completes,
  // which is not a dropped connection.
  private active = 0;
  /** Called once when the server refuses the token (HTTP 401, socket closed with 4401/4403). */
  onUnauthenticated: (message: string) => void = () => {};

  constructor(
    readonly token: string,
    readonly endpoint: string = new URL("/graphql", window.location.href).href,
  ) {}

  async request<TData, TVars extends Record<string, unknown>>(
    document: TypedDocumentNode<TData, TVars>,
    variables: TVars,
    signal?: AbortSignal,
  ): Promise<TData> {
    let response: Response;
    try {
      response = await fetch(this.endpoint, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/graphql-response+json, application/json",
          Authorization: `Bearer ${this.token}`,
        },
        body: JSON.stringify({ query: source(document as never), variables }),
        signal,
      });
    } catch (error) {
      if (signal?.aborted) throw error;
      throw new ApiError(`The server at ${this.endpoint} cannot be reached.`, "network");
    }
    const body = (await response.json().catch(() => null)) as {
      data?: TData;
      errors?: GraphQLErrorShape[];
    } | null;
    if (response.status === 401) {
      const message = body?.errors?.[0]?.message ?? "The token was refused.";
      const error = new ApiError(`The token was refused: ${message}`, "unauthenticated");
      this.onUnauthenticated(error.message);
      throw error;
    }
    if (body === null) {
      throw new ApiError(`The server answered ${response.status} without a GraphQL body.`, "network");
    }
    if (body.errors?.length) throw errorOf(body.errors);
    if (body.data === undefined) throw new ApiError("The server answered without data.", "graphql");
    return body.data;
  }

  /**
   * Subscribe and keep subscribed: after a dropped socket, subscribe again with the variables
   * `variables()` gives then (a follower passes the last seq it saw as afterSeq). Returns the
   * unsubscribe function.
   */
  subscribe<TData, TVars extends Record<string, unknown>>(
    document: TypedDocumentNode<TData, TVars>,
    variables: () => TVars,
    handlers: {
      next: (data: TData) => void;
      error?: (error: ApiError) => void;
      complete?: () => void;
      /** Each (re)subscription, before its first message: a list re-reads its page here. */
      subscribed?: (attempt: number) => void;
    },
  ): () => void {
    let stopped = false;
    let counted = true;
    this.active += 1;
    const uncount = () => {
      if (counted) this.active -= 1;
      counted = false;
    };
    let cancel: (() => void) | null = null;
    let attempt = 0;
    let timer: number | undefined;
    const start = () => {
      if (stopped) return;
      const current = attempt;
      handlers.subscribed?.(current);
      cancel = this.client().subscribe<TData>(
        { query: source(document as never), variables: variables() },
        {
          next: (message) => {
            attempt = 0;
            if (message.errors?.length) {
              handlers.error?.(errorOf(message.errors as GraphQLErrorShape[]));
            } else if (message.data) {
              handlers.next(message.data as TData);
            }
          },
          error: (error) => {
            if (stopped) return;
            if (Array.isArray(error)) {
              uncount();
              handlers.error?.(errorOf(error as GraphQLErrorShape[]));
              return;
            }
            const code = (error as CloseEvent | undefined)?.code;
            if (code === 4401 || code === 4403) {
              uncount();
              const message = "The token was refused by the server; sign in again.";
              this.onUnauthenticated(message);
              handlers.error?.(new ApiError(message, "unauthenticated"));
              return;
            }
            // The socket dropped: subscribe again after a short, growing pause.
            attempt += 1;
            const pause = Math.min(5000, 250 * 2 ** Math.min(attempt, 5));
            timer = window.setTimeout(start, pause);
          },
          complete: () => {
            uncount();
            if (!stopped) handlers.complete?.();
          },
        },
      );
    };
    start();
    return () => {
      stopped = true;
      uncount();
      window.clearTimeout(timer);
      cancel?.();
    };
  }

  /** Whether the socket is open now; `listener` hears each change. */
  onConnection(listener: (connected: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    void this.socket?.dispose();
    this.socket = null;
  }

  private client(): Client {
    if (this.socket === null) {
      const url = this.endpoint.replace(/^http/, "ws");
      this.socket = createClient({
        url,
        connectionParams: { Authorization: `Bearer ${this.token}` },
        lazy: true,
        // Resubscribing (with a fresh afterSeq) is done per subscription above, not here.
        retryAttempts: 0,
        keepAlive: 15_000,
        on: {
          connected: () => this.listeners.forEach((listener) => listener(true)),
          closed: () => {
            if (this.active > 0) this.listeners.forEach((listener) => listener(false));
          },
        },
      });
    }
    return this.socket;
  }
}
