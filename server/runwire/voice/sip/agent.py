"""A SIP user agent over UDP (RFC 3261): places calls (UAC) and answers them (UAS).

One `SipUserAgent` owns one UDP socket and every task that retransmits or serves on it, all
inside its `async with`; each call's RTP socket lives inside the call's own `async with`. Nothing
is global: two agents in one process are two independent endpoints.

Transactions are kept small: a client transaction retransmits its request (Timer A/E) until a
response comes; an INVITE server transaction resends its last response when the INVITE is
retransmitted and retransmits a final response (Timer G) until the ACK. In-dialog requests
follow the Record-Route set (loose routing). UDP only: TCP and TLS transports are not done yet.

Blind transfer (RFC 3515): the answering side can `SipCall.transfer()` a call (REFER, then BYE);
the calling side accepts a REFER and reports where it was sent, without calling the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from runwire.voice import calls
from runwire.voice.sip import digest, sdp
from runwire.voice.sip.message import (
    MalformedMessage,
    SipMessage,
    SipRequest,
    SipResponse,
    SipUri,
    new_branch,
    new_call_id,
    new_tag,
    param,
    parse,
    response_to,
    split_commas,
    uri_of,
)
from runwire.voice.sip.rtp import RtpSession

log = logging.getLogger(__name__)

T1 = 0.5
"""RFC 3261 round-trip estimate: the first retransmission interval."""
T2 = 4.0
"""The longest retransmission interval for non-INVITE requests and final responses."""
TIMER_B = 64 * T1
"""How long an INVITE waits for any response before the far end counts as gone."""
BYE_WAIT_SECONDS = 2.0
"""How long hanging up waits for the far end's 200 to our BYE."""
CANCEL_WAIT_SECONDS = 2.0
"""How long a cancelled INVITE waits for its 487 (to ACK it) before giving up."""
REFER_WAIT_SECONDS = 2.0
"""How long a transfer waits for the 202 to its REFER, then again for the NOTIFY after it."""
_DIALOG_LINGER_SECONDS = 32.0
_ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY"
_USER_AGENT = "runwire"


class _Refused(Exception):
    """ICMP port unreachable came back for a request we sent."""


# Client transactions


@dataclass(eq=False)
class _ClientTransaction:
    request: SipRequest
    destination: tuple[str, int]
    responses: asyncio.Queue[SipResponse | _Refused] = field(default_factory=asyncio.Queue)
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    async def next(self) -> SipResponse:
        item = await self.responses.get()
        if isinstance(item, _Refused):
            raise item
        return item


# Dialogs: an answered call, from either side


class SipCall:
    """An answered call (`calls.Call`), either side: BYE either way, its media, and transfer."""

    def __init__(
        self,
        ua: SipUserAgent,
        *,
        call_id: str,
        local: str,
        remote: str,
        remote_target: str,
        destination: tuple[str, int],
        cseq: int,
        media: RtpSession,
        route: tuple[str, ...] = (),
    ) -> None:
        self._ua = ua
        self.route = route
        """The proxies that asked to stay on the path (Record-Route), as Route headers."""
        self.call_id = call_id
        self.local = local
        """Our From (UAC) or To (UAS) value, with our tag."""
        self.remote = remote
        self.remote_target = remote_target
        self.destination = destination
        self.cseq = cseq
        self._media = media
        self._ended: calls.Ended | None = None
        self.ack: bytes | None = None
        """The ACK we sent to the 2xx (UAC), resent if the 2xx is retransmitted."""
        self.confirmed = asyncio.Event()
        """The far end's ACK to our 2xx arrived, or the call ended (UAS)."""
        self.answer_sdp = b""
        self.transferred_to: str | None = None
        """The Refer-To of the REFER we accepted (the calling side), if one came."""
        self._refer_cseq: int | None = None
        self.transfer_result: str | None = None
        """The status line the far end's NOTIFY reported for our REFER (the answering side)."""
        self._notified = asyncio.Event()

    @property
    def local_tag(self) -> str:
        return param(self.local, "tag") or ""

    @property
    def media(self) -> RtpSession:
        return self._media

    @property
    def ended(self) -> calls.Ended | None:
        return self._ended

    async def hangup(self) -> None:
        if self._ended is not None:
            return
        self._ended = calls.Ended(calls.HungUpBy.US, "BYE", self.transferred_to)
        self._media.stop()
        self.confirmed.set()  # no more 2xx retransmissions once we hang up
        self.cseq += 1
        bye = self._ua._request(
            "BYE",
            self.remote_target,
            call_id=self.call_id,
            from_value=self.local,
            to_value=self.remote,
            cseq=self.cseq,
            route=self.route,
        )
        try:
            response = await self._ua._non_invite(bye, self.destination, BYE_WAIT_SECONDS)
        except _Refused:
            response = None  # the far end is gone already: the call is over either way
        if response is None:
            log.info("no answer to our BYE for call %s", self.call_id)

    def far_end_hung_up(self, cause: str) -> None:
        if self._ended is None:
            if self.transferred_to is not None and cause == "BYE":
                cause = "REFER"  # the BYE that completes a blind transfer
            self._ended = calls.Ended(calls.HungUpBy.FAR_END, cause, self.transferred_to)
        self._media.stop()
        self.confirmed.set()
        self._notified.set()  # a transfer waiting for its NOTIFY stops waiting

    async def transfer(self, target: str) -> bool:
        """Blind transfer: REFER the far end to `target` (a SIP URI), then hang up (BYE).

        True when the far end accepted the REFER (2xx); the BYE goes either way.
        """
        try:
            return await self.refer(target)
        finally:
            await self.hangup()

    async def refer(self, target: str) -> bool:
        """REFER the far end to `target`; True when it accepted (2xx). Waits for its NOTIFY (the
        new call's outcome, in `transfer_result`) up to REFER_WAIT_SECONDS; does not hang up."""
        SipUri.parse(target)  # MalformedMessage for a target that is not a SIP URI
        if self._ended is not None:
            return False
        self._notified.clear()
        self.transfer_result = None
        self.cseq += 1
        refer = self._ua._request(
            "REFER",
            self.remote_target,
            call_id=self.call_id,
            from_value=self.local,
            to_value=self.remote,
            cseq=self.cseq,
            route=self.route,
            extra=(
                ("Refer-To", f"<{target}>"),
                ("Referred-By", f"<{uri_of(self.local)}>"),
                ("Contact", self._ua.contact),
            ),
        )
        try:
            response = await self._ua._non_invite(refer, self.destination, REFER_WAIT_SECONDS)
        except _Refused:
            response = None
        if response is None or not 200 <= response.status < 300:
            refusal = "no answer" if response is None else f"{response.status} {response.reason}"
            log.info("REFER to %s for call %s refused: %s", target, self.call_id, refusal)
            return False
        # The NOTIFY may have come before the 202 (UDP does not keep order): the event holds it.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REFER_WAIT_SECONDS):
                await self._notified.wait()
        return True

    def referred(self, request: SipRequest, source: tuple[str, int]) -> None:
        """A REFER from the far end: 202, then a NOTIFY that the transfer succeeded.

        We only report the transfer (`transferred_to`, then `Ended.transferred_to`) and never
        call the target: a test wants to know where the IVR sent the caller, not to ring it.
        The far end then hangs up, as a transferor does.
        """
        ua = self._ua
        refer_to = request.headers_named("Refer-To")
        if len(refer_to) != 1:
            ua._send(response_to(request, 400, "Exactly one Refer-To, please"), source)
            return
        if self._ended is not None:
            ua._send(response_to(request, 481), source)
            return
        ua._send(response_to(request, 202, extra=(("Contact", ua.contact),)), source)
        if self._refer_cseq == request.cseq[0]:
            return  # a retransmission: its NOTIFY has gone already
        self._refer_cseq = request.cseq[0]
        self.transferred_to = uri_of(refer_to[0])
        self.cseq += 1
        notify = ua._request(
            "NOTIFY",
            self.remote_target,
            call_id=self.call_id,
            from_value=self.local,
            to_value=self.remote,
            cseq=self.cseq,
            route=self.route,
            extra=(
                ("Event", "refer"),
                # Terminated at once: there is no new call whose progress could follow.
                ("Subscription-State", "terminated;reason=noresource"),
                ("Contact", ua.contact),
                ("Content-Type", "message/sipfrag;version=2.0"),
            ),
            body=b"SIP/2.0 200 OK\r\n",
        )
        ua._spawn(ua._non_invite_quietly(notify, self.destination), "sip-notify")

    def notified(self, request: SipRequest) -> None:
        """A NOTIFY for our REFER: the sipfrag's status line is the transfer's outcome."""
        if (request.header("Event") or "").split(";")[0].strip().lower() != "refer":
            return
        self.transfer_result = request.body.decode("utf-8", "replace").split("\r\n")[0].strip()
        self._notified.set()


# The UAS side: an INVITE on its way to being answered


class _ServerInvite:
    """An INVITE server transaction: the last response, resent until the ACK."""

    def __init__(self, ua: SipUserAgent, request: SipRequest, source: tuple[str, int]) -> None:
        self.ua = ua
        self.request = request
        self.source = source
        self.to_tag = new_tag()
        self.last: SipResponse | None = None
        self.acked = asyncio.Event()
        self.cancelled = asyncio.Event()

    @property
    def final(self) -> bool:
        return self.last is not None and self.last.status >= 200

    def respond(self, response: SipResponse) -> None:
        if self.final:
            return
        self.last = response
        self.ua._send(response, self.source)
        if response.status >= 200:
            self.ua._spawn(self._retransmit(response), "sip-final-retransmit")

    def resend(self) -> None:
        if self.last is not None:
            self.ua._send(self.last, self.source)

    async def _retransmit(self, response: SipResponse) -> None:
        # Timer G doubles up to T2; Timer H gives up after 64*T1 without an ACK.
        interval, deadline = T1, asyncio.get_running_loop().time() + TIMER_B
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self.acked.wait()
            if self.acked.is_set():
                return
            self.ua._send(response, self.source)
            interval = min(interval * 2, T2)


class IncomingCall:
    """An INVITE to our UAS: ring it, answer it, or reject it."""

    def __init__(self, transaction: _ServerInvite, media: RtpSession) -> None:
        self._transaction = transaction
        self._media = media
        self._dialog: SipCall | None = None
        request = transaction.request
        self.request = request
        self.request_uri = request.uri
        self.caller = uri_of(request.need("From"))
        """The caller's URI (`sip:user@host`), from From."""
        self.call_id = request.call_id

    @property
    def cancelled(self) -> bool:
        """The caller gave up (CANCEL) before we answered."""
        return self._transaction.cancelled.is_set()

    async def wait_cancelled(self) -> None:
        await self._transaction.cancelled.wait()

    @property
    def call(self) -> SipCall | None:
        return self._dialog

    async def ring(self) -> None:
        """180 Ringing."""
        self._transaction.respond(self._response(180))

    async def reject(self, status: int, reason: str | None = None) -> None:
        """A final failure response (404, 486, 603 …); the ACK is awaited in the background."""
        if not 300 <= status <= 699:
            raise ValueError(f"{status} is not a failure status")
        self._transaction.respond(self._response(status, reason))

    async def answer(self) -> SipCall:
        """200 OK with our SDP answer; the media starts now. Raises CallFailed if cancelled."""
        if self.cancelled:
            raise calls.CallFailed(487, "Request Terminated")
        if self._transaction.final:
            raise RuntimeError("this call already has a final response")
        try:
            media = sdp.choose(sdp.parse(self.request.body))
        except sdp.SdpError as error:
            self._transaction.respond(self._response(488, "Not Acceptable Here"))
            raise calls.CallFailed(488, str(error)) from error
        ua = self._transaction.ua
        port = self._media.address[1]
        body = sdp.describe(
            ua.public_host,
            port,
            (media.codec,),
            event_payload_type=media.event_payload_type,
        )
        response = self._response(
            200,
            extra=(("Contact", ua.contact), ("Content-Type", "application/sdp")),
            body=body,
        )
        remote_target = uri_of(self.request.header("Contact") or self.request.need("From"))
        route = _route_set(self.request.headers_named("Record-Route"))
        destination = await ua._destination(
            uri_of(route[0]) if route else remote_target, fallback=self._transaction.source
        )
        if self._transaction.final:  # a CANCEL came while we resolved the caller's address
            raise calls.CallFailed(487, "Request Terminated")
        dialog = SipCall(
            ua,
            call_id=self.call_id,
            local=response.need("To"),
            remote=self.request.need("From"),
            remote_target=remote_target,
            destination=destination,
            cseq=0,
            media=self._media,
            route=route,
        )
        dialog.answer_sdp = body
        # One event: the ACK (or our own hang-up) stops the 200's retransmissions.
        dialog.confirmed = self._transaction.acked
        ua._add_dialog(dialog)
        self._dialog = dialog
        self._media.connect(
            media.host, media.port, media.payload_type, media.codec, media.event_payload_type
        )
        self._transaction.respond(response)
        return dialog

    def _response(
        self,
        status: int,
        reason: str | None = None,
        *,
        extra: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> SipResponse:
        return response_to(
            self._transaction.request,
            status,
            reason,
            to_tag=self._transaction.to_tag,
            extra=(*extra, ("Server", _USER_AGENT)),
            body=body,
        )


OnCall = Callable[[IncomingCall], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Serving:
    on_call: OnCall
    credentials: Mapping[str, str] | None
    realm: str


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, ua: SipUserAgent) -> None:
        self.ua = ua
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.ua._datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            self.ua._refused()
        else:
            log.debug("SIP socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class SipUserAgent:
    """A SIP endpoint on one UDP socket: `dial()` places calls, `serving()` answers them."""

    def __init__(
        self, sock: socket.socket, *, user: str, display_name: str | None, public_host: str | None
    ) -> None:
        self._socket = sock
        host, port = sock.getsockname()[:2]
        self.host = str(host)
        self.port = int(port)
        self.public_host = public_host or self.host
        """The address peers reach us at (Via, Contact, SDP): differs from host behind NAT."""
        self.user = user
        self.display_name = display_name
        self._transport: asyncio.DatagramTransport | None = None
        self._clients: dict[tuple[str, str], _ClientTransaction] = {}
        self._servers: dict[str, _ServerInvite] = {}
        self._dialogs: dict[tuple[str, str], SipCall] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._serving: _Serving | None = None
        self._nonces: set[str] = set()
        self._malformed = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def bound(
        cls,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        user: str = "runwire",
        display_name: str | None = None,
        public_host: str | None = None,
    ) -> AsyncIterator[SipUserAgent]:
        """An agent on `host:port` (0 picks a free port); exit ends its calls and frees the port."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            # Without IP_RECVERR Linux drops ICMP errors for an unconnected UDP socket; with it,
            # "port unreachable" surfaces as ConnectionRefusedError and a dialled dead port fails
            # at once instead of after Timer B (32 s).
            with contextlib.suppress(AttributeError, OSError):
                sock.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_RECVERR", 11), 1)
            sock.bind((host, port))
        except BaseException:
            sock.close()
            raise
        ua = cls(sock, user=user, display_name=display_name, public_host=public_host)
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _Protocol(ua), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        ua._transport = transport
        try:
            yield ua
        finally:
            # Handlers first (they hang up their calls, which needs the socket), then timers.
            await _cancel_all(ua._handlers)
            await _cancel_all(ua._tasks)
            transport.close()
            await asyncio.shield(protocol.closed)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def contact(self) -> str:
        return f"<sip:{self.user}@{self.public_host}:{self.port}>"

    # UAC

    def dial(
        self, request: calls.DialRequest, progress: Callable[[calls.Progress], None]
    ) -> AbstractAsyncContextManager[calls.Call]:
        """INVITE `request.target`; enter gives the answered call, exit hangs up (BYE)."""
        return self._dial(request, progress)

    @contextlib.asynccontextmanager
    async def _dial(
        self, request: calls.DialRequest, progress: Callable[[calls.Progress], None]
    ) -> AsyncIterator[calls.Call]:
        try:
            target = SipUri.parse(request.target)
        except MalformedMessage as error:
            raise calls.CallFailed(400, f"not a SIP address: {request.target}") from error
        destination = await self._resolve(*target.address)
        if self.public_host in ("0.0.0.0", ""):
            # Bound to every interface with no public address given: tell the far end the
            # address our packets to it leave from (connecting a UDP socket sends nothing).
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect(destination)
                self.public_host = str(probe.getsockname()[0])
        progress(calls.Progress.DIALING)
        if request.account is not None and request.account.register:
            await self.register(request.account, destination)
        async with RtpSession.bound(self.host) as media:
            dialog = await self._invite(request, destination, media, progress)
            try:
                yield dialog
            finally:
                await dialog.hangup()
                self._forget_later(dialog)

    async def register(
        self, account: calls.Account, registrar: tuple[str, int], expires: int = 3600
    ) -> None:
        """REGISTER our Contact (answering a digest challenge); raises CallFailed if refused."""
        domain = account.domain or registrar[0]
        aor = f"sip:{account.username}@{domain}"
        call_id, tag = new_call_id(self.public_host), new_tag()
        authorization: tuple[str, str] | None = None
        for cseq in (1, 2):
            extra = [("Expires", str(expires))]
            if authorization is not None:
                extra.append(authorization)
            register = self._request(
                "REGISTER",
                f"sip:{domain}",
                call_id=call_id,
                from_value=f"<{aor}>;tag={tag}",
                to_value=f"<{aor}>",
                cseq=cseq,
                extra=extra,
            )
            try:
                response = await self._non_invite(register, registrar, TIMER_B)
            except _Refused:
                raise calls.CallFailed(
                    503, f"nothing answers SIP at {registrar[0]}:{registrar[1]}"
                ) from None
            if response is None:
                raise calls.CallFailed(408, "the registrar did not answer REGISTER")
            if 200 <= response.status < 300:
                return
            if response.status in (401, 407) and authorization is None:
                authorization = _authorize(response, register, account)
                continue
            raise calls.CallFailed(response.status, f"REGISTER refused: {response.reason}")

    async def _invite(
        self,
        request: calls.DialRequest,
        destination: tuple[str, int],
        media: RtpSession,
        progress: Callable[[calls.Progress], None],
    ) -> SipCall:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.answer_timeout_seconds
        preferred = (request.codec, *(c for c in sdp.CODECS if c != request.codec))
        offer = sdp.describe(self.public_host, media.address[1], preferred)
        account = request.account
        user = request.caller_id or (account.username if account else self.user)
        domain = (account.domain if account else None) or self.public_host
        name = f'"{self.display_name}" ' if self.display_name else ""
        from_value = f"{name}<sip:{user}@{domain}>;tag={new_tag()}"
        call_id = new_call_id(self.public_host)
        authorization: tuple[str, str] | None = None
        ringing = False
        for cseq in (1, 2):
            extra = [("Content-Type", "application/sdp"), ("Allow", _ALLOW)]
            if authorization is not None:
                extra.append(authorization)
            invite = self._request(
                "INVITE",
                request.target,
                call_id=call_id,
                from_value=from_value,
                to_value=f"<{request.target}>",
                cseq=cseq,
                extra=extra,
                body=offer,
            )
            async with self._client_transaction(invite, destination) as transaction:
                try:
                    final = await self._final(transaction, deadline, progress, ringing)
                except _Refused:
                    raise calls.CallFailed(
                        503, f"nothing answers SIP at {destination[0]}:{destination[1]}"
                    ) from None
                except TimeoutError:
                    await self._cancel(transaction)
                    if transaction.answered.is_set():
                        raise calls.CallFailed(
                            408, f"no answer within {request.answer_timeout_seconds:g} s"
                        ) from None
                    raise calls.CallFailed(
                        408, f"no response from {destination[0]}:{destination[1]}"
                    ) from None
                except asyncio.CancelledError:
                    await self._cancel(transaction)
                    raise
                ringing = True
                if 200 <= final.status < 300:
                    dialog = await self._answered(invite, final, destination, media, preferred)
                    progress(calls.Progress.ANSWERED)
                    return dialog
                self._ack_failure(invite, final, destination)
            if final.status in (401, 407) and account is not None and authorization is None:
                authorization = _authorize(final, invite, account)
                continue
            raise calls.CallFailed(final.status, final.reason)
        raise AssertionError("unreachable")

    async def _final(
        self,
        transaction: _ClientTransaction,
        deadline: float,
        progress: Callable[[calls.Progress], None],
        ringing: bool,
    ) -> SipResponse:
        loop = asyncio.get_running_loop()
        no_response = loop.time() + TIMER_B
        while True:
            limit = deadline if transaction.answered.is_set() else min(deadline, no_response)
            async with asyncio.timeout_at(limit):
                response = await transaction.next()
            if response.status >= 200:
                return response
            if response.status in (180, 183) and not ringing:
                ringing = True
                progress(calls.Progress.RINGING)

    async def _cancel(self, transaction: _ClientTransaction) -> None:
        """CANCEL a pending INVITE and ACK whatever final response it gets (RFC 3261 9.1)."""
        invite = transaction.request
        cancel = SipRequest(
            method="CANCEL",
            uri=invite.uri,
            headers=(
                ("Via", invite.need("Via")),
                ("Max-Forwards", "70"),
                ("From", invite.need("From")),
                ("To", invite.need("To")),
                ("Call-ID", invite.call_id),
                ("CSeq", f"{invite.cseq[0]} CANCEL"),
                ("User-Agent", _USER_AGENT),
            ),
        )
        self._spawn(self._non_invite_quietly(cancel, transaction.destination), "sip-cancel")
        try:
            async with asyncio.timeout(CANCEL_WAIT_SECONDS):
                while (response := await transaction.next()).status < 200:
                    pass
        except (TimeoutError, _Refused):
            return
        if 200 <= response.status < 300:
            # The far end answered as we cancelled: the call exists, so ACK it and hang up.
            to = response.need("To")
            ack = self._request(
                "ACK",
                invite.uri,
                call_id=invite.call_id,
                from_value=invite.need("From"),
                to_value=to,
                cseq=invite.cseq[0],
            )
            self._send(ack, transaction.destination)
            bye = self._request(
                "BYE",
                uri_of(response.header("Contact") or invite.uri),
                call_id=invite.call_id,
                from_value=invite.need("From"),
                to_value=to,
                cseq=invite.cseq[0] + 1,
            )
            self._spawn(self._non_invite_quietly(bye, transaction.destination), "sip-bye")
        else:
            self._ack_failure(invite, response, transaction.destination)

    async def _answered(
        self,
        invite: SipRequest,
        response: SipResponse,
        destination: tuple[str, int],
        media: RtpSession,
        preferred: tuple[str, ...],
    ) -> SipCall:
        remote_target = uri_of(response.header("Contact") or invite.uri)
        # The UAC's route set is the 2xx's Record-Route in reverse (RFC 3261 12.1.2).
        route = _route_set(response.headers_named("Record-Route"))[::-1]
        dialog = SipCall(
            self,
            call_id=invite.call_id,
            local=invite.need("From"),
            remote=response.need("To"),
            remote_target=remote_target,
            destination=await self._destination(
                uri_of(route[0]) if route else remote_target, fallback=destination
            ),
            cseq=invite.cseq[0],
            media=media,
            route=route,
        )
        ack = self._request(
            "ACK",
            remote_target,
            call_id=dialog.call_id,
            from_value=dialog.local,
            to_value=dialog.remote,
            cseq=invite.cseq[0],
            route=route,
        )
        dialog.ack = ack.encode()
        self._add_dialog(dialog)
        self._send(ack, dialog.destination)
        try:
            chosen = sdp.answer_choice(sdp.parse(response.body), preferred)
        except sdp.SdpError as error:
            await dialog.hangup()
            raise calls.CallFailed(488, f"the answer's SDP is unusable: {error}") from error
        media.connect(
            chosen.host, chosen.port, chosen.payload_type, chosen.codec, chosen.event_payload_type
        )
        # What a re-INVITE from the far end gets: the session as negotiated, unchanged.
        dialog.answer_sdp = sdp.describe(
            self.public_host,
            media.address[1],
            (chosen.codec,),
            event_payload_type=chosen.event_payload_type,
        )
        return dialog

    def _ack_failure(
        self, invite: SipRequest, response: SipResponse, destination: tuple[str, int]
    ) -> None:
        """The ACK to a non-2xx final response: same branch and Request-URI as the INVITE."""
        ack = SipRequest(
            method="ACK",
            uri=invite.uri,
            headers=(
                ("Via", invite.need("Via")),
                ("Max-Forwards", "70"),
                ("From", invite.need("From")),
                ("To", response.need("To")),
                ("Call-ID", invite.call_id),
                ("CSeq", f"{invite.cseq[0]} ACK"),
            ),
        )
        self._send(ack, destination)

    # UAS

    def serving(
        self,
        on_call: OnCall,
        *,
        credentials: Mapping[str, str] | None = None,
        realm: str = "runwire",
    ) -> AbstractAsyncContextManager[None]:
        """Answer INVITEs with `on_call` (one task per call) while inside; exit ends them.

        With `credentials` (username → password) INVITE and REGISTER must answer a digest
        challenge first. When `on_call` returns, a call it answered is hung up; one it neither
        answered nor rejected gets 480.
        """
        return self._serve(_Serving(on_call, credentials, realm))

    @contextlib.asynccontextmanager
    async def _serve(self, serving: _Serving) -> AsyncIterator[None]:
        if self._serving is not None:
            raise RuntimeError("this agent is already serving")
        self._serving = serving
        try:
            yield
        finally:
            self._serving = None
            await _cancel_all(self._handlers)

    async def _handle(self, transaction: _ServerInvite, on_call: OnCall) -> None:
        async with RtpSession.bound(self.host) as media:
            incoming = IncomingCall(transaction, media)
            try:
                await on_call(incoming)
            except calls.CallFailed as error:
                # answer() after the caller's CANCEL: the call is simply gone.
                log.debug(
                    "incoming call %s ended before it was answered: %s", incoming.call_id, error
                )
            except Exception:
                log.exception("the call handler for %s failed", incoming.call_id)
                transaction.respond(incoming._response(500))
            finally:
                if incoming._dialog is not None:
                    await incoming._dialog.hangup()
                    self._forget_later(incoming._dialog)
                elif not transaction.final:
                    transaction.respond(incoming._response(480))

    def _incoming_invite(self, request: SipRequest, source: tuple[str, int]) -> None:
        serving = self._serving
        transaction = _ServerInvite(self, request, source)
        branch = request.branch or ""
        self._servers[branch] = transaction
        asyncio.get_running_loop().call_later(TIMER_B + 4, self._servers.pop, branch, None)
        if serving is None:
            transaction.respond(response_to(request, 480, to_tag=transaction.to_tag))
            return
        if not self._authorized(request, serving, transaction, source):
            return
        transaction.respond(response_to(request, 100))
        task = asyncio.create_task(
            self._handle(transaction, serving.on_call), name=f"sip-call-{request.call_id}"
        )
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    def _authorized(
        self,
        request: SipRequest,
        serving: _Serving,
        transaction: _ServerInvite | None,
        source: tuple[str, int],
    ) -> bool:
        """Whether the request carries valid credentials; if not, a 401 challenge is sent."""
        if not serving.credentials:
            return True
        answer = request.header("Authorization")
        if answer is not None and digest.verify(
            answer,
            method=request.method,
            password_of=dict(serving.credentials),
            nonces=self._nonces,
        ):
            return True
        challenge, header = digest.challenge_header(serving.realm)
        self._nonces.add(challenge.nonce)
        response = response_to(
            request,
            401,
            to_tag=transaction.to_tag if transaction else new_tag(),
            extra=(("WWW-Authenticate", header),),
        )
        if transaction is not None:
            transaction.respond(response)
        else:
            self._send(response, source)
        return False

    # The transport: every datagram in

    def _datagram(self, data: bytes, source: tuple[str, int]) -> None:
        if not data.strip():
            return  # CRLF keep-alives
        try:
            message = parse(data)
        except MalformedMessage as error:
            self._malformed += 1
            if self._malformed == 1:
                # Once per agent: a noisy peer must not flood the log.
                log.debug("dropped a malformed SIP datagram from %s: %s", source, error)
            return
        try:
            if isinstance(message, SipResponse):
                self._response_received(message)
            else:
                self._request_received(message, source)
        except MalformedMessage as error:
            log.debug("dropped a SIP message from %s we cannot act on: %s", source, error)
        except Exception:
            log.exception("failed to handle a SIP message from %s", source)

    def _response_received(self, response: SipResponse) -> None:
        method = response.cseq[1]
        transaction = self._clients.get((response.branch or "", method))
        if transaction is not None:
            transaction.answered.set()
            if response.status >= 200:
                transaction.finished.set()
            transaction.responses.put_nowait(response)
            return
        if method == "INVITE" and 200 <= response.status < 300:
            # A retransmitted 2xx means our ACK was lost: send it again.
            dialog = self._dialogs.get((response.call_id, response.from_tag or ""))
            if dialog is not None and dialog.ack is not None and self._transport is not None:
                self._transport.sendto(dialog.ack, dialog.destination)

    def _request_received(self, request: SipRequest, source: tuple[str, int]) -> None:
        method = request.method
        if method == "ACK":
            server = self._servers.get(request.branch or "")
            if server is not None:
                server.acked.set()
            dialog = self._dialogs.get((request.call_id, request.to_tag or ""))
            if dialog is not None:
                dialog.confirmed.set()
                for candidate in self._servers.values():
                    if candidate.request.call_id == request.call_id:
                        candidate.acked.set()
            return
        if method == "CANCEL":
            server = self._servers.get(request.branch or "")
            if server is None:
                self._send(response_to(request, 481), source)
                return
            self._send(response_to(request, 200, to_tag=server.to_tag), source)
            if not server.final:
                server.cancelled.set()
                server.respond(response_to(server.request, 487, to_tag=server.to_tag))
            return
        if request.to_tag:
            self._in_dialog(request, source)
            return
        if method == "INVITE":
            server = self._servers.get(request.branch or "")
            if server is not None:
                server.resend()  # a retransmitted INVITE
            else:
                self._incoming_invite(request, source)
        elif method == "REGISTER":
            serving = self._serving
            if serving is None or self._authorized(request, serving, None, source):
                contact = request.header("Contact")
                extra = [("Expires", request.header("Expires") or "3600")]
                if contact:
                    extra.append(("Contact", contact))
                self._send(response_to(request, 200, to_tag=new_tag(), extra=extra), source)
        elif method == "OPTIONS":
            self._send(
                response_to(request, 200, to_tag=new_tag(), extra=(("Allow", _ALLOW),)), source
            )
        elif method == "BYE":
            self._send(response_to(request, 481), source)
        else:
            self._send(response_to(request, 501, extra=(("Allow", _ALLOW),)), source)

    def _in_dialog(self, request: SipRequest, source: tuple[str, int]) -> None:
        dialog = self._dialogs.get((request.call_id, request.to_tag or ""))
        if dialog is None:
            self._send(response_to(request, 481), source)
            return
        if request.method == "BYE":
            self._send(response_to(request, 200), source)
            dialog.far_end_hung_up("BYE")
        elif request.method == "INVITE":
            # A re-INVITE (session refresh or hold): keep the session as it is.
            extra = (("Contact", self.contact), ("Content-Type", "application/sdp"))
            body = dialog.answer_sdp or sdp.describe(self.public_host, dialog.media.address[1])
            self._send(response_to(request, 200, extra=extra, body=body), source)
        elif request.method == "REFER":
            dialog.referred(request, source)
        elif request.method in ("OPTIONS", "INFO", "UPDATE", "NOTIFY"):
            self._send(response_to(request, 200), source)
            if request.method == "NOTIFY":
                dialog.notified(request)
        else:
            self._send(response_to(request, 501, extra=(("Allow", _ALLOW),)), source)

    def _refused(self) -> None:
        """ICMP port unreachable: fail the transactions sent to the address it came back for."""
        refused: set[tuple[str, int]] = set()
        while True:
            try:
                _, _, _, address = self._socket.recvmsg(1, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:
                if error.errno != errno.EAGAIN:
                    log.debug("reading the socket's error queue failed: %s", error)
                break
            if address:
                refused.add((str(address[0]), int(address[1])))
        for transaction in list(self._clients.values()):
            if not refused or transaction.destination in refused:
                transaction.responses.put_nowait(_Refused())

    # Sending

    def _send(self, message: SipMessage, destination: tuple[str, int]) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._transport.sendto(message.encode(), destination)

    def _request(
        self,
        method: str,
        uri: str,
        *,
        call_id: str,
        from_value: str,
        to_value: str,
        cseq: int,
        extra: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        route: Sequence[str] = (),
    ) -> SipRequest:
        headers = [
            ("Via", f"SIP/2.0/UDP {self.public_host}:{self.port};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", from_value),
            ("To", to_value),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            *(("Route", hop) for hop in route),
        ]
        if method in ("INVITE", "REGISTER"):
            headers.append(("Contact", self.contact))
        headers += [*extra, ("User-Agent", _USER_AGENT)]
        return SipRequest(headers=tuple(headers), body=body, method=method, uri=uri)

    @contextlib.asynccontextmanager
    async def _client_transaction(
        self, request: SipRequest, destination: tuple[str, int]
    ) -> AsyncIterator[_ClientTransaction]:
        transaction = _ClientTransaction(request, destination)
        key = (request.branch or "", request.method)
        self._clients[key] = transaction
        retransmit = asyncio.create_task(self._retransmit(transaction), name="sip-retransmit")
        try:
            yield transaction
        finally:
            retransmit.cancel()
            self._clients.pop(key, None)
            await asyncio.wait([retransmit])

    async def _retransmit(self, transaction: _ClientTransaction) -> None:
        # Timer A (INVITE) doubles until any response; Timer E (others) doubles up to T2
        # until a final response, and stays at T2 once a provisional one came.
        invite = transaction.request.method == "INVITE"
        wanted = transaction.answered if invite else transaction.finished
        interval = T1
        while True:
            self._send(transaction.request, transaction.destination)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await wanted.wait()
            if wanted.is_set():
                return
            interval = interval * 2 if invite else min(interval * 2, T2)
            if not invite and transaction.answered.is_set():
                interval = T2

    async def _non_invite(
        self, request: SipRequest, destination: tuple[str, int], wait: float
    ) -> SipResponse | None:
        """Send a non-INVITE request; its final response, or None if none came in time."""
        async with self._client_transaction(request, destination) as transaction:
            try:
                async with asyncio.timeout(wait):
                    while (response := await transaction.next()).status < 200:
                        pass
            except TimeoutError:
                return None
            return response

    async def _non_invite_quietly(self, request: SipRequest, destination: tuple[str, int]) -> None:
        with contextlib.suppress(_Refused):
            await self._non_invite(request, destination, CANCEL_WAIT_SECONDS)

    # Bookkeeping

    def _spawn(self, coroutine: Awaitable[None], name: str) -> None:
        async def run() -> None:
            await coroutine

        task = asyncio.create_task(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _add_dialog(self, dialog: SipCall) -> None:
        self._dialogs[(dialog.call_id, dialog.local_tag)] = dialog

    def _forget_later(self, dialog: SipCall) -> None:
        # Kept a while after it ends so a retransmitted BYE still finds it and gets its 200.
        key = (dialog.call_id, dialog.local_tag)
        asyncio.get_running_loop().call_later(_DIALOG_LINGER_SECONDS, self._dialogs.pop, key, None)

    async def _resolve(self, host: str, port: int) -> tuple[str, int]:
        try:
            socket.inet_aton(host)
            return host, port
        except OSError:
            pass
        loop = asyncio.get_running_loop()
        try:
            found = await loop.getaddrinfo(
                host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM
            )
        except OSError as error:
            raise calls.CallFailed(503, f"cannot resolve {host}: {error}") from error
        address = found[0][4]
        return str(address[0]), int(address[1])

    async def _destination(self, uri: str, *, fallback: tuple[str, int]) -> tuple[str, int]:
        try:
            return await self._resolve(*SipUri.parse(uri).address)
        except (MalformedMessage, calls.CallFailed):
            return fallback


def _route_set(record_routes: Iterable[str]) -> tuple[str, ...]:
    """Record-Route values, one hop each (loose routing, RFC 3261 16.12; strict is not done)."""
    return tuple(hop for value in record_routes for hop in split_commas(value))


def _authorize(
    response: SipResponse, request: SipRequest, account: calls.Account
) -> tuple[str, str]:
    """The (Proxy-)Authorization header answering a 401/407 to `request`."""
    proxy = response.status == 407
    header = response.header("Proxy-Authenticate" if proxy else "WWW-Authenticate")
    if header is None:
        raise calls.CallFailed(response.status, f"{response.reason} (no challenge)")
    try:
        challenge = digest.parse_challenge(header)
        value = digest.authorization(
            challenge,
            method=request.method,
            uri=request.uri,
            username=account.username,
            password=account.password,
        )
    except digest.DigestError as error:
        raise calls.CallFailed(response.status, f"{response.reason} ({error})") from error
    return ("Proxy-Authorization" if proxy else "Authorization"), value


async def _cancel_all(tasks: set[asyncio.Task[None]]) -> None:
    pending = list(tasks)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
