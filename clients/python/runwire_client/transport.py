"""Where and how the client talks to the server: endpoints, gql transports, failure kinds.

The token travels only in the `Authorization` header (HTTP) and in the connection_init
payload (WebSocket), never in a URL; the debug logs of gql and websockets, which print every
frame they send, have it redacted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from gql.transport.exceptions import (
    TransportClosed,
    TransportConnectionFailed,
    TransportError,
    TransportProtocolError,
    TransportQueryError,
    TransportServerError,
)
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from runwire_client.errors import (
    AuthenticationError,
    ConnectionFailedError,
    QueryError,
    RunwireError,
    UnexpectedResponseError,
    from_graphql_errors,
)

# The websockets library logs frames through this logger (given to it below), so they pass
# the redaction filter too.
SOCKET_LOGGER = "runwire_client.websocket"
# Loggers that print what is sent: gql's frame and payload logs, and the socket frames.
_SENDING_LOGGERS = ("gql.transport.common.base", "gql.transport.httpx", SOCKET_LOGGER)
# graphql-transport-ws close codes: 4401 (no connection_ack yet) and 4403 (the server refused
# or revoked the credential) are about the token; other 44xx codes are protocol mistakes,
# except 4408 (connection_init timed out), which is worth another try. Runwire's own 4100: the
# client read too slowly and was cut; subscriptions resume from the last seq they yielded.
_AUTH_CLOSE_CODES = frozenset({4401, 4403})
_RETRYABLE_4XXX = frozenset({4408, 4100})


@dataclass(frozen=True)
class Endpoint:
    """The server's GraphQL endpoint over HTTP and over WebSocket."""

    http: str
    ws: str

    @classmethod
    def of(cls, url: str) -> Endpoint:
        """From the server's base URL or its /graphql URL; http(s) only, no query or user."""
        parts = urlsplit(url.strip())
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL of the server, got {url!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            # A token put there would land in proxies' and servers' access logs.
            raise ValueError(
                "the server URL must not carry credentials, a query or a fragment;"
                " pass the token as `token`"
            )
        path = parts.path.rstrip("/")
        if not path.endswith("/graphql"):
            path += "/graphql"
        http = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        ws_scheme = "wss" if parts.scheme == "https" else "ws"
        return cls(http=http, ws=urlunsplit((ws_scheme, parts.netloc, path, "", "")))


def http_transport(endpoint: Endpoint, token: str, timeout: float) -> HTTPXAsyncTransport:
    """Queries and mutations: POST with the bearer header."""
    return HTTPXAsyncTransport(
        url=endpoint.http, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
    )


def socket_transport(endpoint: Endpoint, token: str, timeout: float) -> WebsocketsTransport:
    """Subscriptions: graphql-transport-ws, the token in connection_init."""
    return WebsocketsTransport(
        url=endpoint.ws,
        # gql offers the legacy graphql-ws subprotocol first unless told; the server speaks
        # only graphql-transport-ws.
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        init_payload={"Authorization": f"Bearer {token}"},
        connect_timeout=timeout,
        ack_timeout=timeout,
        # Closing a socket whose peer is gone must not hold up the reconnect.
        close_timeout=1,
        connect_args={"logger": logging.getLogger(SOCKET_LOGGER)},
    )


class _RedactTokens(logging.Filter):
    """Replaces the registered tokens, and any connection_init frame, in log records."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        # Runs only for records a logger is enabled for: no cost when debug logging is off.
        message = record.getMessage()
        if "connection_init" in message:
            # The frame may be shortened in the log (websockets keeps its head and tail), so
            # the token can show only in part: keep just the fact that one was sent.
            message = "connection_init sent (payload with the credential redacted)"
        for token in self.tokens:
            message = message.replace(token, "<redacted>")
        record.msg, record.args = message, None
        return True


_REDACT = _RedactTokens()
for _name in _SENDING_LOGGERS:
    logging.getLogger(_name).addFilter(_REDACT)


def redact_in_logs(token: str) -> None:
    """Keep `token` out of every log line the transports write from now on."""
    if token:
        _REDACT.tokens.add(token)


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    found: BaseException | None = error
    while found is not None and id(found) not in seen:
        seen.add(id(found))
        yield found
        found = found.__cause__ or found.__context__


def close_code(error: BaseException) -> int | None:
    """The WebSocket close code the server sent, if `error` came from a closed socket."""
    for cause in _causes(error):
        if isinstance(cause, ConnectionClosed) and cause.rcvd is not None:
            return cause.rcvd.code
    return None


def is_connection_problem(error: BaseException) -> bool:
    """A dropped or refused connection, worth a reconnect (not the server saying no)."""
    code = close_code(error)
    if code is not None and 4000 <= code < 5000 and code not in _RETRYABLE_4XXX:
        return False
    return isinstance(
        error,
        TransportConnectionFailed
        | TransportClosed
        | ConnectionClosed
        | InvalidHandshake
        | OSError
        | TimeoutError,
    )


def translated(error: BaseException, endpoint: Endpoint) -> RunwireError:
    """The client's exception for a transport failure that reconnecting would not cure."""
    code = close_code(error)
    if code in _AUTH_CLOSE_CODES:
        return AuthenticationError(
            f"the server closed the subscription socket ({code}): the token is missing,"
            " unknown, expired or revoked"
        )
    if isinstance(error, TransportQueryError):
        return from_graphql_errors(error.errors or [{"message": str(error)}])
    if isinstance(error, TransportServerError):
        if error.code == 401:
            return AuthenticationError("the server refused the token (HTTP 401)")
        if error.code is not None and error.code >= 500:
            return ConnectionFailedError(f"the server at {endpoint.http} answered {error.code}")
        return QueryError(f"the server refused the request (HTTP {error.code}): {error}")
    if is_connection_problem(error):
        return ConnectionFailedError(f"could not reach the server at {endpoint.http}: {error}")
    if isinstance(error, TransportProtocolError | TransportError):
        return UnexpectedResponseError(f"the server broke the protocol: {error}")
    return UnexpectedResponseError(f"{type(error).__name__}: {error}")


# Exceptions the transports raise that `translated` turns into the client's own.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    TransportError,
    ConnectionClosed,
    InvalidHandshake,
    OSError,
    TimeoutError,
)
