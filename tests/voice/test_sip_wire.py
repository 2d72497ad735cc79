"""RTP and SIP as they look on the wire: a plain UDP socket plays the far end, byte by byte."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from runwire.voice import calls
from runwire.voice.codecs import ulaw_encode
from runwire.voice.media import FRAME_BYTES, AudioFrame, DigitHeard, DigitMethod, Inbound
from runwire.voice.sip import sdp
from runwire.voice.sip.agent import IncomingCall, SipUserAgent
from runwire.voice.sip.message import SipRequest, SipResponse, parse, response_to
from runwire.voice.sip.rtp import RtpSession

DEADLINE_S = 5.0


class _Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.queue.put_nowait((data, asyncio.get_running_loop().time()))


@dataclass
class Peer:
    """A bare UDP socket on loopback: what it receives, with arrival times."""

    transport: asyncio.DatagramTransport
    protocol: _Collect

    @property
    def port(self) -> int:
        return int(self.transport.get_extra_info("sockname")[1])

    async def receive(self) -> tuple[bytes, float]:
        async with asyncio.timeout(DEADLINE_S):
            return await self.protocol.queue.get()

    def send(self, data: bytes, port: int) -> None:
        self.transport.sendto(data, ("127.0.0.1", port))


@asynccontextmanager
async def peer() -> AsyncIterator[Peer]:
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        _Collect, local_addr=("127.0.0.1", 0)
    )
    try:
        yield Peer(transport, protocol)
    finally:
        transport.close()
        await protocol.closed


@dataclass(frozen=True)
class Packet:
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    payload: bytes


def rtp(data: bytes) -> Packet:
    first, second, sequence, timestamp, _ = struct.unpack("!BBHII", data[:12])
    assert first == 0x80
    return Packet(bool(second & 0x80), second & 0x7F, sequence, timestamp, data[12:])


def rtp_bytes(payload_type: int, sequence: int, timestamp: int, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, payload_type, sequence, timestamp, 0x1234) + payload


async def test_rfc4733_events_go_out_with_growing_durations_and_three_end_packets() -> None:
    async with peer() as far, RtpSession.bound() as session:
        session.connect("127.0.0.1", far.port, 0, "PCMU", 101)
        await session.send_digits("5", DigitMethod.RFC4733, tone_ms=60, gap_ms=40)
        packets = []
        while len(packets) < 9:
            packets.append(rtp((await far.receive())[0]))
    events = [p for p in packets if p.payload_type == 101]
    audio = [p for p in packets if p.payload_type == 0]
    assert [struct.unpack("!BBH", p.payload) for p in events] == [
        (5, 10, 160),
        (5, 10, 320),
        (5, 0x80 | 10, 480),
        (5, 0x80 | 10, 480),
        (5, 0x80 | 10, 480),
    ]
    assert [p.marker for p in events] == [True, False, False, False, False]
    assert len({p.timestamp for p in events}) == 1
    assert [p.sequence - packets[0].sequence for p in packets] == list(range(9))
    # Silence (160 µ-law 0xFF) before and after: the after-event audio starts a talkspurt.
    assert all(p.payload == b"\xff" * 160 for p in audio)
    assert audio[0].marker
    after = [p for p in packets[packets.index(events[-1]) + 1 :] if p.payload_type == 0]
    assert after[0].marker
    assert after[0].timestamp == events[0].timestamp + 3 * 160


async def test_audio_is_paced_at_20_ms_against_the_clock() -> None:
    async with peer() as far, RtpSession.bound() as session:
        session.connect("127.0.0.1", far.port, 8, "PCMA", None)
        tone = struct.pack("<160h", *([3000, -3000] * 80))
        play = asyncio.create_task(session.play(tone * 25))
        arrivals = [await far.receive() for _ in range(31)]
        await play
    packets = [rtp(data) for data, _ in arrivals]
    assert all(p.payload_type == 8 for p in packets)
    assert [p.timestamp - packets[0].timestamp for p in packets] == [160 * i for i in range(31)]
    elapsed = arrivals[-1][1] - arrivals[0][1]
    # Never ahead of the clock; behind it only by scheduling noise (not an accumulating drift).
    assert 0.595 <= elapsed < 1.0, elapsed


async def test_received_audio_is_reframed_and_digits_are_reported_once() -> None:
    async with peer() as far, RtpSession.bound() as session:
        session.connect("127.0.0.1", far.port, 0, "PCMU", 101)
        early = session.heard()
        heard = session.heard()
        port = session.address[1]
        ramp = struct.pack("<320h", *range(0, 3200, 10))  # 40 ms: two frames in one packet
        far.send(rtp_bytes(0, 1, 0, ulaw_encode(ramp)), port)
        far.send(b"\x80garbage", port)
        # A packet with a CSRC and a header extension, as some PBXes send.
        extended = struct.pack("!BBHII", 0x91, 0, 2, 320, 0x1234) + b"\0\0\0\1"
        extended += struct.pack("!HH", 0xBEDE, 1) + b"\0\0\0\0" + b"\xff" * 160
        far.send(extended, port)
        # A 7 whose end packets are lost (it ends when the next event starts), then a #.
        far.send(rtp_bytes(101, 3, 400, struct.pack("!BBH", 7, 0x0A, 160)), port)
        for duration, flags in ((160, 0x0A), (320, 0x8A), (320, 0x8A), (320, 0x8A)):
            far.send(rtp_bytes(101, 4, 480, struct.pack("!BBH", 11, flags, duration)), port)
        got: list[Inbound] = []
        async with asyncio.timeout(DEADLINE_S):
            async for item in heard:
                got.append(item)
                if len([digit for digit in got if isinstance(digit, DigitHeard)]) == 2:
                    break
        late = session.heard()
        far.send(rtp_bytes(0, 4, 800, b"\xff" * 160), port)
        async with asyncio.timeout(DEADLINE_S):
            assert isinstance(await anext(late), AudioFrame)
        session.stop()
        assert [item async for item in late] == []
        assert len([item async for item in early]) == 6  # three frames, two digits, a frame
    frames = [item.pcm for item in got if isinstance(item, AudioFrame)]
    assert [len(frame) for frame in frames] == [FRAME_BYTES] * 3
    assert frames[2] == bytes(FRAME_BYTES)
    assert [(item.digit, item.method) for item in got if isinstance(item, DigitHeard)] == [
        ("7", DigitMethod.RFC4733),
        ("#", DigitMethod.RFC4733),
    ]


INVITE = (
    "INVITE sip:menu@127.0.0.1:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKraw1\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:tester@127.0.0.1:{me}>;tag=raw\r\n"
    "To: <sip:menu@127.0.0.1:{port}>\r\n"
    "Call-ID: raw-call@127.0.0.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:tester@127.0.0.1:{me}>\r\n"
    "Content-Type: application/sdp\r\n"
    "\r\n"
)


async def test_the_uas_resends_its_last_response_and_repeats_200_until_the_ack() -> None:
    go_on = asyncio.Event()
    answered: asyncio.Future[calls.Call] = asyncio.get_running_loop().create_future()

    async def on_call(incoming: IncomingCall) -> None:
        await incoming.ring()
        await go_on.wait()
        call = await incoming.answer()
        answered.set_result(call)
        async for _ in call.media.heard():
            pass

    async def response(far: Peer) -> SipResponse:
        message = parse((await far.receive())[0])
        assert isinstance(message, SipResponse)
        return message

    async with SipUserAgent.bound() as agent, agent.serving(on_call), peer() as far:
        port = agent.address[1]
        far.send(b"\r\n\r\n", port)  # a keep-alive
        far.send(b"INVITE nonsense\r\n\r\n", port)  # dropped, and the agent carries on
        offer = sdp.describe("127.0.0.1", 40000, ("PCMU",))
        invite = INVITE.format(port=port, me=far.port).encode() + offer
        far.send(
            invite.replace(b"\r\n\r\n", f"\r\nContent-Length: {len(offer)}\r\n\r\n".encode()), port
        )
        assert (await response(far)).status == 100
        assert (await response(far)).status == 180
        far.send(
            invite.replace(b"\r\n\r\n", f"\r\nContent-Length: {len(offer)}\r\n\r\n".encode()), port
        )
        assert (await response(far)).status == 180  # the retransmitted INVITE gets the 180 again
        go_on.set()
        ok = await response(far)
        assert ok.status == 200
        assert sdp.choose(sdp.parse(ok.body)).codec == "PCMU"
        again = await response(far)  # no ACK yet: Timer G sends the 200 again
        assert again.encode() == ok.encode()
        to = ok.need("To")
        for method, cseq in (("ACK", "1 ACK"), ("BYE", "2 BYE")):
            request = SipRequest(
                method=method,
                uri=f"sip:runwire@127.0.0.1:{port}",
                headers=(
                    ("Via", f"SIP/2.0/UDP 127.0.0.1:{far.port};branch=z9hG4bK{method}"),
                    ("From", f"<sip:tester@127.0.0.1:{far.port}>;tag=raw"),
                    ("To", to),
                    ("Call-ID", "raw-call@127.0.0.1"),
                    ("CSeq", cseq),
                ),
            )
            far.send(request.encode(), port)
        bye_ok = await response(far)
        assert (bye_ok.status, bye_ok.cseq) == (200, (2, "BYE"))
        call = await answered
        assert call.ended == calls.Ended(calls.HungUpBy.FAR_END, "BYE")


async def test_in_dialog_requests_follow_the_record_route() -> None:
    async with peer() as far, peer() as proxy, SipUserAgent.bound() as agent:

        async def answer() -> None:
            invite = parse((await far.receive())[0])
            assert isinstance(invite, SipRequest)
            # The proxy nearest us is the last Record-Route entry: we route through it first.
            record_route = f"<sip:10.9.9.9;lr>, <sip:127.0.0.1:{proxy.port};lr>"
            ok = response_to(
                invite,
                200,
                to_tag="far",
                extra=(
                    ("Record-Route", record_route),
                    ("Contact", f"<sip:ivr@127.0.0.1:{far.port}>"),
                    ("Content-Type", "application/sdp"),
                ),
                body=sdp.describe("127.0.0.1", 40000, ("PCMU",)),
            )
            far.send(ok.encode(), agent.address[1])

        async def relay() -> list[SipRequest]:
            got = []
            while not got or got[-1].method != "BYE":
                message = parse((await proxy.receive())[0])
                assert isinstance(message, SipRequest)
                got.append(message)
            proxy.send(response_to(got[-1], 200).encode(), agent.address[1])
            return got

        answering, relaying = asyncio.create_task(answer()), asyncio.create_task(relay())
        request = calls.DialRequest(f"sip:ivr@127.0.0.1:{far.port}")
        async with agent.dial(request, lambda _: None):
            await answering
        ack, bye = await relaying
    assert (ack.method, ack.uri) == ("ACK", f"sip:ivr@127.0.0.1:{far.port}")
    assert (bye.method, bye.uri) == ("BYE", f"sip:ivr@127.0.0.1:{far.port}")
    route = [f"<sip:127.0.0.1:{proxy.port};lr>", "<sip:10.9.9.9;lr>"]
    assert ack.headers_named("Route") == bye.headers_named("Route") == route
