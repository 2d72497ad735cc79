"""Placing a call: the driver interface the `call` step uses, whatever carries the call.

A driver turns a `DialRequest` into an answered `Call` (or a `CallFailed` carrying the SIP status
and reason), reporting its progress on the way. `sip` is a real SIP user agent with RTP media;
`simulated` runs the IVR simulator in-process on the same audio pipeline without a network.
A hosted-telephony driver (a Twilio or Vonage media stream) would fit the same shape: dial over
the provider's REST API, then carry 8 kHz µ-law frames over its WebSocket as a `MediaLeg`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from runwire.voice.media import MediaLeg


class Progress(StrEnum):
    """How far a call has got before it is answered."""

    DIALING = "DIALING"
    RINGING = "RINGING"
    ANSWERED = "ANSWERED"


class HungUpBy(StrEnum):
    US = "US"
    FAR_END = "FAR_END"


@dataclass(frozen=True, slots=True)
class Account:
    """Credentials for the far end's registrar or proxy (digest auth); from server-side secrets."""

    username: str
    password: str
    domain: str | None = None
    register: bool = False
    """REGISTER before dialing (a PBX extension); otherwise credentials answer 401/407 only."""


@dataclass(frozen=True, slots=True)
class DialRequest:
    target: str
    """`sip:user@host[:port]` for `sip`; a menu (file path or shipped name) for `simulated`."""
    caller_id: str | None = None
    account: Account | None = None
    answer_timeout_seconds: float = 30.0
    codec: str = "PCMU"
    """PCMU or PCMA."""


class CallFailed(Exception):
    """The call was not answered: the SIP status (404, 486, 408, 503 …) and a readable reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Ended:
    """How an answered call ended."""

    by: HungUpBy
    cause: str
    """`BYE`, `REFER` (the far end transferred the call, then hung up), or the SIP status or
    transport error that ended it."""
    transferred_to: str | None = None
    """Where the far end transferred the call (a REFER's Refer-To), if it did. Set when the
    call ends, not at the REFER: the media runs until the far end's BYE."""


class Call(Protocol):
    """An answered call."""

    @property
    def media(self) -> MediaLeg: ...

    @property
    def ended(self) -> Ended | None:
        """How the call ended, once it has (the far end's BYE ends `media.heard()` too)."""
        ...

    async def hangup(self) -> None:
        """Hang up (BYE) if the call is still up; returns when the far end answered or gave up."""
        ...


class CallDriver(Protocol):
    name: str

    def dial(
        self, request: DialRequest, progress: Callable[[Progress], None]
    ) -> AbstractAsyncContextManager[Call]:
        """Place the call; enter gives the answered call, exit hangs up and frees every port.

        Raises CallFailed when the far end refuses, is busy, does not exist or does not answer
        within `answer_timeout_seconds`. Cancelling the enter cancels the call (CANCEL).
        """
        ...


class EngineMissing(Exception):
    """An audio engine (TTS, recognition) is not installed; the message says what to install."""
