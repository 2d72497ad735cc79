"""Our SIP UAC calling our SIP UAS over loopback UDP: media both ways, hang-ups and failures."""

from __future__ import annotations

import asyncio
import math
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from runwire.voice import calls
from runwire.voice.codecs import ulaw_decode, ulaw_encode
from runwire.voice.dtmf import DtmfDetector
from runwire.voice.media import FRAME_BYTES, AudioFrame, DigitHeard, DigitMethod, Inbound
from runwire.voice.sip.agent import IncomingCall, SipUserAgent
from runwire.voice.sip.driver import SipDriver

DEADLINE_S = 5.0


def tone(hz: float, ms: int, amplitude: int = 8000) -> bytes:
    samples = [int(amplitude * math.sin(2 * math.pi * hz * n / 8000)) for n in range(8 * ms)]
    return struct.pack(f"<{len(samples)}h", *samples)


async def take(
    heard: AsyncIterator[Inbound], done: Callable[[list[Inbound]], bool]
) -> list[Inbound]:
    """What an iterator yields until `done` says enough (or it ends), within the deadline."""
    got: list[Inbound] = []
    async with asyncio.timeout(DEADLINE_S):
        async for item in heard:
            got.append(item)
            if done(got):
                break
    return got


def digits_of(items: list[Inbound], method: DigitMethod) -> str:
    return "".join(i.digit for i in items if isinstance(i, DigitHeard) and i.method is method)


def digits(method: DigitMethod, count: int) -> Callable[[list[Inbound]], bool]:
    return lambda items: len(digits_of(items, method)) >= count


def voiced(items: list[Inbound]) -> bytes:
    frames = [i.pcm for i in items if isinstance(i, AudioFrame)]
    return b"".join(frame for frame in frames if any(frame))


async def eventually(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while not check():
            await asyncio.sleep(0.01)


def progress_log() -> tuple[list[calls.Progress], Callable[[calls.Progress], None]]:
    seen: list[calls.Progress] = []
    return seen, seen.append


@asynccontextmanager
async def uas(
    on_call: Callable[[IncomingCall], Awaitable[None]], **options: object
) -> AsyncIterator[SipUserAgent]:
    async with SipUserAgent.bound() as agent, agent.serving(on_call, **options):  # type: ignore[arg-type]
        yield agent


def target(agent: SipUserAgent, user: str = "menu") -> str:
    return f"sip:{user}@{agent.address[0]}:{agent.address[1]}"


class Answerer:
    """A UAS handler that rings, answers, hands the call to the test and stays until it ends."""

    def __init__(self) -> None:
        self.incoming: asyncio.Future[IncomingCall] = asyncio.get_running_loop().create_future()
        self.call: asyncio.Future[calls.Call] = asyncio.get_running_loop().create_future()
        self.hang_up = asyncio.Event()

    async def __call__(self, incoming: IncomingCall) -> None:
        self.incoming.set_result(incoming)
        await incoming.ring()
        call = await incoming.answer()
        heard = call.media.heard()
        self.call.set_result(call)
        hang_up = asyncio.create_task(self.hang_up.wait())
        ended = asyncio.create_task(take(heard, lambda _: False))
        await asyncio.wait([hang_up, ended], return_when=asyncio.FIRST_COMPLETED)
        hang_up.cancel()
        ended.cancel()
        await asyncio.wait([hang_up, ended])


async def test_answered_call_carries_audio_and_digits_both_ways() -> None:
    answerer = Answerer()
    seen, progress = progress_log()
    async with uas(answerer) as server, SipUserAgent.bound() as client:
        request = calls.DialRequest(target(server), caller_id="5551234")
        async with client.dial(request, progress) as call:
            assert seen == [calls.Progress.DIALING, calls.Progress.RINGING, calls.Progress.ANSWERED]
            incoming = await answerer.incoming
            assert incoming.request_uri == target(server)
            assert incoming.caller.startswith("sip:5551234@")
            far = await answerer.call

            pattern = tone(1000, 100)
            far_heard, near_heard = far.media.heard(), call.media.heard()
            await asyncio.gather(call.media.play(pattern), far.media.play(tone(700, 60)))
            got = await take(far_heard, lambda items: len(voiced(items)) >= len(pattern))
            assert voiced(got) == ulaw_decode(ulaw_encode(pattern))
            got = await take(near_heard, lambda items: len(voiced(items)) >= 480 * 2)
            assert voiced(got)[: 480 * 2] == ulaw_decode(ulaw_encode(tone(700, 60)))

            far_heard, near_heard = far.media.heard(), call.media.heard()
            await asyncio.gather(
                call.media.send_digits("12#", DigitMethod.RFC4733, tone_ms=60, gap_ms=40),
                far.media.send_digits("9*", DigitMethod.RFC4733, tone_ms=60, gap_ms=40),
            )
            got = await take(far_heard, digits(DigitMethod.RFC4733, 3))
            assert digits_of(got, DigitMethod.RFC4733) == "12#"
            got = await take(near_heard, digits(DigitMethod.RFC4733, 2))
            assert digits_of(got, DigitMethod.RFC4733) == "9*"

            far_heard = far.media.heard()
            await call.media.send_digits("159", DigitMethod.INBAND, tone_ms=80, gap_ms=60)
            got = await take(far_heard, digits(DigitMethod.INBAND, 3))
            assert digits_of(got, DigitMethod.INBAND) == "159"

            sent, heard = call.media.recording()
            assert len(sent) == len(heard)
            assert len(sent) % FRAME_BYTES == 0
            assert pattern in sent
            # RFC 4733 digits travel as events but are recorded as the tones they stand for.
            assert "".join(DtmfDetector().feed(sent)) == "12#159"
            assert ulaw_decode(ulaw_encode(tone(700, 60))) in heard
        assert call.ended == calls.Ended(calls.HungUpBy.US, "BYE")
        await eventually(lambda: far.ended is not None)
        assert far.ended == calls.Ended(calls.HungUpBy.FAR_END, "BYE")


async def test_far_end_bye_ends_the_callers_media() -> None:
    answerer = Answerer()
    async with uas(answerer) as server, SipUserAgent.bound() as client:
        async with client.dial(calls.DialRequest(target(server)), lambda _: None) as call:
            heard = call.media.heard()
            await answerer.call
            answerer.hang_up.set()
            await take(heard, lambda _: False)  # ends when the BYE arrives
            assert call.ended == calls.Ended(calls.HungUpBy.FAR_END, "BYE")
        far = await answerer.call
        assert far.ended == calls.Ended(calls.HungUpBy.US, "BYE")


@pytest.mark.parametrize(("status", "reason"), [(486, "Busy Here"), (404, "Not Found")])
async def test_a_rejected_call_fails_with_the_status(status: int, reason: str) -> None:
    async def reject(incoming: IncomingCall) -> None:
        await incoming.reject(status)

    async with uas(reject) as server, SipUserAgent.bound() as client:
        with pytest.raises(calls.CallFailed) as failed:
            async with client.dial(calls.DialRequest(target(server)), lambda _: None):
                pytest.fail("answered")
        assert (failed.value.status, failed.value.reason) == (status, reason)


async def test_no_answer_cancels_and_fails_with_408() -> None:
    cancelled = asyncio.Event()

    async def ring_forever(incoming: IncomingCall) -> None:
        await incoming.ring()
        await incoming.wait_cancelled()
        cancelled.set()

    seen, progress = progress_log()
    async with uas(ring_forever) as server, SipUserAgent.bound() as client:
        request = calls.DialRequest(target(server), answer_timeout_seconds=0.4)
        with pytest.raises(calls.CallFailed) as failed:
            async with client.dial(request, progress):
                pytest.fail("answered")
        assert (failed.value.status, failed.value.reason) == (408, "no answer within 0.4 s")
        assert seen == [calls.Progress.DIALING, calls.Progress.RINGING]
        await eventually(cancelled.is_set)


async def test_cancelling_the_dial_sends_cancel() -> None:
    ringing, cancelled = asyncio.Event(), asyncio.Event()

    async def ring_forever(incoming: IncomingCall) -> None:
        await incoming.ring()
        await incoming.wait_cancelled()
        cancelled.set()

    def progress(step: calls.Progress) -> None:
        if step is calls.Progress.RINGING:
            ringing.set()

    async with uas(ring_forever) as server, SipUserAgent.bound() as client:

        async def dial() -> None:
            async with client.dial(calls.DialRequest(target(server)), progress):
                pytest.fail("answered")

        dialing = asyncio.create_task(dial())
        await eventually(ringing.is_set)
        dialing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await dialing
        await eventually(cancelled.is_set)


async def test_a_port_nobody_listens_on_fails_at_once_with_503() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with SipUserAgent.bound() as client, asyncio.timeout(2):
        with pytest.raises(calls.CallFailed) as failed:
            async with client.dial(calls.DialRequest(f"sip:x@127.0.0.1:{port}"), lambda _: None):
                pytest.fail("answered")
    assert failed.value.status == 503
    assert failed.value.reason == f"nothing answers SIP at 127.0.0.1:{port}"


async def test_digest_challenges_are_answered_with_the_accounts_password() -> None:
    answerer = Answerer()
    credentials = {"alice": "wonderland"}
    async with uas(answerer, credentials=credentials) as server:
        async with SipUserAgent.bound() as client:
            account = calls.Account("alice", "wonderland", register=True)
            request = calls.DialRequest(target(server), account=account)
            async with client.dial(request, lambda _: None) as call:
                await answerer.call
                assert call.ended is None
        async with SipUserAgent.bound() as client:
            request = calls.DialRequest(target(server), account=calls.Account("alice", "guess"))
            with pytest.raises(calls.CallFailed) as failed:
                async with client.dial(request, lambda _: None):
                    pytest.fail("answered")
            assert failed.value.status == 401
        async with SipUserAgent.bound() as client:
            with pytest.raises(calls.CallFailed) as failed:
                async with client.dial(calls.DialRequest(target(server)), lambda _: None):
                    pytest.fail("answered")
            assert failed.value.status == 401


async def test_the_driver_frees_every_port_when_the_call_ends() -> None:
    answerer = Answerer()
    async with uas(answerer) as server:
        driver = SipDriver("127.0.0.1")
        async with driver.dial(calls.DialRequest(target(server)), lambda _: None) as call:
            rtp_port = call.media.address[1]  # type: ignore[attr-defined]
            far = await answerer.call
            far_rtp_port = far.media.address[1]  # type: ignore[attr-defined]
        assert rtp_port % 2 == far_rtp_port % 2 == 0  # RTP on even ports (RFC 3550 11)
        await eventually(lambda: far.ended is not None)
        await eventually(lambda: answerer.call.done() and not server._handlers)
        for port in (rtp_port, far_rtp_port):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
                again.bind(("127.0.0.1", port))
    sip_port = server.address[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", sip_port))
