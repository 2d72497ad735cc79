"""SDP offer/answer (RFC 3264) for one audio stream: PCMU, PCMA and telephone-event at 20 ms."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

CODECS = {"PCMU": 0, "PCMA": 8}
"""The static payload types of the codecs we speak."""
EVENT_PAYLOAD_TYPE = 101
PTIME_MS = 20


class SdpError(ValueError):
    """A session description without a usable audio stream."""


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """The parts of a peer's SDP we use: where to send audio, and what it accepts."""

    host: str
    port: int
    payload_types: tuple[int, ...]
    rtpmap: dict[int, str]
    """Payload type to encoding name (upper case), from a=rtpmap plus the static types."""


@dataclass(frozen=True, slots=True)
class Media:
    """The negotiated stream: the peer's address and the payload types both sides use."""

    host: str
    port: int
    payload_type: int
    codec: str
    event_payload_type: int | None


def parse(body: bytes) -> SessionDescription:
    """The first audio m= line and its connection address (media-level c= wins)."""
    session_host: str | None = None
    media_host: str | None = None
    port: int | None = None
    payload_types: tuple[int, ...] = ()
    rtpmap: dict[int, str] = {}
    in_audio = False
    seen_audio = False
    for raw in body.decode("utf-8", "replace").splitlines():
        kind, equals, value = raw.strip().partition("=")
        if not equals:
            continue
        if kind == "m":
            in_audio = False
            fields = value.split()
            if fields[:1] == ["audio"] and not seen_audio and len(fields) >= 4:
                try:
                    port = int(fields[1].split("/")[0])
                    payload_types = tuple(int(pt) for pt in fields[3:])
                except ValueError as error:
                    raise SdpError(f"bad m= line {value!r}") from error
                in_audio = seen_audio = True
        elif kind == "c":
            fields = value.split()
            if len(fields) == 3:
                host = fields[2].split("/")[0]
                if in_audio:
                    media_host = host
                elif not seen_audio:
                    session_host = host
        elif kind == "a" and in_audio and value.startswith("rtpmap:"):
            number, _, encoding = value.removeprefix("rtpmap:").partition(" ")
            if number.isdigit():
                rtpmap[int(number)] = encoding.split("/")[0].upper()
    address = media_host or session_host
    if port is None or address is None:
        raise SdpError("no audio stream with a connection address")
    for codec, static in CODECS.items():
        rtpmap.setdefault(static, codec)
    return SessionDescription(address, port, payload_types, rtpmap)


def choose(offer: SessionDescription, preferred: Sequence[str] = ("PCMU", "PCMA")) -> Media:
    """Our pick from the peer's offer: the first of `preferred` it accepts, and its DTMF events."""
    offered = {offer.rtpmap.get(pt): pt for pt in reversed(offer.payload_types)}
    for codec in preferred:
        if codec in offered:
            return Media(
                offer.host, offer.port, offered[codec], codec, offered.get("TELEPHONE-EVENT")
            )
    raise SdpError(f"no common codec: the peer offers {sorted(filter(None, offered))}")


def answer_choice(answer: SessionDescription, preferred: Sequence[str]) -> Media:
    """What the peer's answer picked: its first payload type that we offered."""
    ours = [answer.rtpmap.get(pt, "") for pt in answer.payload_types]
    return choose(answer, [codec for codec in ours if codec in preferred] or list(preferred))


def describe(
    host: str,
    port: int,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    *,
    event_payload_type: int | None = EVENT_PAYLOAD_TYPE,
    session_id: int | None = None,
) -> bytes:
    """Our SDP: an offer listing `codecs`, or an answer listing just the chosen one."""
    session = session_id if session_id is not None else secrets.randbelow(2**31)
    payload_types = [str(CODECS[codec]) for codec in codecs]
    lines = [
        "v=0",
        f"o=runwire {session} {session} IN IP4 {host}",
        "s=runwire",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(payload_types)}"
        + (f" {event_payload_type}" if event_payload_type is not None else ""),
    ]
    lines += [f"a=rtpmap:{CODECS[codec]} {codec}/8000" for codec in codecs]
    if event_payload_type is not None:
        lines += [
            f"a=rtpmap:{event_payload_type} telephone-event/8000",
            f"a=fmtp:{event_payload_type} 0-16",
        ]
    lines += [f"a=ptime:{PTIME_MS}", "a=sendrecv"]
    return ("\r\n".join(lines) + "\r\n").encode()
