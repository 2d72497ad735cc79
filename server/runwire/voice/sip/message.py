"""SIP messages (RFC 3261 section 7): parse a datagram into a request or response, and build one.

Header names are kept in their canonical long form (compact forms such as `v` and `i` are
expanded on parse); values are kept as text, with helpers for the parts a user agent needs
(tags, branch, URIs in name-addr form, CSeq). Comma-joined Via values are split, so each hop is
its own header.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

BRANCH_MAGIC = "z9hG4bK"
"""RFC 3261 branch prefix: a transaction id unique over space and time."""

_COMPACT = {
    "v": "Via",
    "f": "From",
    "t": "To",
    "i": "Call-ID",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "r": "Refer-To",
    "u": "Allow-Events",
}
_CANONICAL = {
    name.lower(): name
    for name in (
        *_COMPACT.values(),
        "CSeq",
        "Max-Forwards",
        "User-Agent",
        "Allow",
        "Authorization",
        "Proxy-Authorization",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "Expires",
        "Record-Route",
        "Route",
        "Server",
        "Require",
        "Unsupported",
        "Accept",
    )
}
_START_REQUEST = re.compile(r"^([A-Za-z]+) (\S+) SIP/2\.0$")
_START_RESPONSE = re.compile(r"^SIP/2\.0 ([1-6]\d\d) ?(.*)$")

REASONS = {
    100: "Trying",
    180: "Ringing",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    603: "Decline",
}


class MalformedMessage(ValueError):
    """A datagram that is not a SIP message this parser understands."""


def canonical(name: str) -> str:
    """The long, conventionally capitalised form of a header name."""
    lowered = name.strip().lower()
    if lowered in _COMPACT:
        return _COMPACT[lowered]
    return _CANONICAL.get(lowered, "-".join(part.capitalize() for part in lowered.split("-")))


@dataclass(frozen=True, slots=True)
class _Message:
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of a header, or None."""
        wanted = canonical(name)
        return next((value for key, value in self.headers if key == wanted), None)

    def headers_named(self, name: str) -> list[str]:
        wanted = canonical(name)
        return [value for key, value in self.headers if key == wanted]

    def need(self, name: str) -> str:
        value = self.header(name)
        if value is None:
            raise MalformedMessage(f"no {canonical(name)} header")
        return value

    @property
    def call_id(self) -> str:
        return self.need("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.need("CSeq"))

    @property
    def branch(self) -> str | None:
        """The top Via's branch: the transaction this message belongs to."""
        via = self.header("Via")
        return None if via is None else param(via, "branch")

    @property
    def from_tag(self) -> str | None:
        return param(self.need("From"), "tag")

    @property
    def to_tag(self) -> str | None:
        return param(self.need("To"), "tag")

    def _lines(self, start: str) -> bytes:
        lines = [start]
        lines += [f"{key}: {value}" for key, value in self.headers if key != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


@dataclass(frozen=True, slots=True)
class SipRequest(_Message):
    method: str = "OPTIONS"
    uri: str = ""

    def encode(self) -> bytes:
        return self._lines(f"{self.method} {self.uri} SIP/2.0")

    def with_headers(self, **values: str) -> SipRequest:
        """A copy with these headers replaced (names with `_` for `-`), or appended if absent."""
        return replace(self, headers=_replaced(self.headers, values))


@dataclass(frozen=True, slots=True)
class SipResponse(_Message):
    status: int = 200
    reason: str = "OK"

    def encode(self) -> bytes:
        return self._lines(f"SIP/2.0 {self.status} {self.reason}")


SipMessage = SipRequest | SipResponse


def _replaced(
    headers: tuple[tuple[str, str], ...], values: dict[str, str]
) -> tuple[tuple[str, str], ...]:
    updates = {canonical(key.replace("_", "-")): value for key, value in values.items()}
    out: list[tuple[str, str]] = []
    for key, value in headers:
        if key in updates:
            out.append((key, updates.pop(key)))
            continue
        out.append((key, value))
    out += list(updates.items())
    return tuple(out)


def parse(data: bytes) -> SipMessage:
    """One SIP message from one datagram; raises MalformedMessage for anything else."""
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        head, separator, body = data.partition(b"\n\n")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MalformedMessage("headers are not UTF-8") from error
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)  # RFC 3261 7.5: ignore blank lines before the start line (keep-alives)
    if not lines:
        raise MalformedMessage("empty datagram")
    start, header_lines = lines[0].strip(), lines[1:]
    headers: list[tuple[str, str]] = []
    for line in header_lines:
        if line[:1] in (" ", "\t") and headers:  # a folded continuation line
            key, value = headers[-1]
            headers[-1] = (key, f"{value} {line.strip()}".strip())
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or " " in name.strip():
            raise MalformedMessage(f"bad header line {line[:40]!r}")
        headers.append((canonical(name), value.strip()))
    headers = _split_vias(headers)
    length_text = next((value for key, value in headers if key == "Content-Length"), None)
    if length_text is not None:
        if not length_text.isdigit() or int(length_text) > len(body):
            raise MalformedMessage(f"Content-Length {length_text!r} beyond the datagram")
        body = body[: int(length_text)]
    if match := _START_REQUEST.match(start):
        message: SipMessage = SipRequest(
            headers=tuple(headers), body=body, method=match[1].upper(), uri=match[2]
        )
    elif match := _START_RESPONSE.match(start):
        message = SipResponse(
            headers=tuple(headers), body=body, status=int(match[1]), reason=match[2]
        )
    else:
        raise MalformedMessage(f"bad start line {start[:60]!r}")
    for needed in ("Via", "From", "To", "Call-ID", "CSeq"):
        message.need(needed)
    message.cseq  # noqa: B018  (validates the CSeq now, so handlers never meet a bad one)
    return message


def _split_vias(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in headers:
        if key == "Via" and "," in value:
            out += [(key, part.strip()) for part in split_commas(value)]
        else:
            out.append((key, value))
    return out


def split_commas(value: str) -> list[str]:
    """The values of a comma-joined header (commas in quotes or <URIs> do not split)."""
    parts, current, quoted, bracketed = [], "", False, False
    for char in value:
        if char == '"':
            quoted = not quoted
        elif char in "<>" and not quoted:
            bracketed = char == "<"
        if char == "," and not quoted and not bracketed:
            parts.append(current)
            current = ""
        else:
            current += char
    return [part.strip() for part in (*parts, current) if part.strip()]


def parse_cseq(value: str) -> tuple[int, str]:
    number, _, method = value.strip().partition(" ")
    if not number.isdigit() or not method.strip():
        raise MalformedMessage(f"bad CSeq {value!r}")
    return int(number), method.strip().upper()


def param(value: str, name: str) -> str | None:
    """A `;name=value` parameter of a header value (outside its <URI>), or None."""
    _, _, after = value.rpartition(">") if ">" in value else ("", "", value)
    for part in after.split(";")[1:]:
        key, _, found = part.partition("=")
        if key.strip().lower() == name:
            return found.strip().strip('"')
    return None


def uri_of(value: str) -> str:
    """The URI in a name-addr (`"Name" <sip:a@b>;tag=x`) or addr-spec (`sip:a@b;tag=x`)."""
    if "<" in value:
        return value[value.index("<") + 1 : value.index(">", value.index("<"))]
    return value.split(";", 1)[0].strip()


@dataclass(frozen=True, slots=True)
class SipUri:
    user: str | None
    host: str
    port: int | None = None
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, uri: str) -> SipUri:
        scheme, colon, rest = uri.strip().partition(":")
        if not colon or scheme.lower() not in ("sip", "sips"):
            raise MalformedMessage(f"not a sip: URI {uri!r}")
        rest = rest.split("?", 1)[0]
        address, *param_parts = rest.split(";")
        user, at, hostport = address.rpartition("@")
        host, port = hostport, None
        if hostport.startswith("["):
            host, _, after = hostport[1:].partition("]")
            port_text = after.removeprefix(":")
        else:
            host, _, port_text = hostport.partition(":")
        if port_text:
            if not port_text.isdigit():
                raise MalformedMessage(f"bad port in {uri!r}")
            port = int(port_text)
        if not host:
            raise MalformedMessage(f"no host in {uri!r}")
        params = {}
        for part in param_parts:
            key, _, value = part.partition("=")
            params[key.lower()] = value
        return cls(user if at else None, host, port, params)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port or 5060


def new_branch() -> str:
    return BRANCH_MAGIC + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(12)}@{host}"


def response_to(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> SipResponse:
    """A response with the request's Via, From, To (tagged), Call-ID and CSeq (RFC 3261 8.2.6)."""
    headers: list[tuple[str, str]] = []
    for key, value in request.headers:
        if key == "To" and to_tag and param(value, "tag") is None:
            value = f"{value};tag={to_tag}"
        if key in ("Via", "From", "To", "Call-ID", "CSeq", "Record-Route"):
            headers.append((key, value))
    headers += list(extra)
    return SipResponse(
        headers=tuple(headers),
        body=body,
        status=status,
        reason=reason if reason is not None else REASONS.get(status, "Unknown"),
    )
