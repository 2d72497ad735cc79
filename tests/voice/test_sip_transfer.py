"""Blind transfer (RFC 3515) over loopback UDP: REFER, 202, NOTIFY with a sipfrag, then BYE."""

from __future__ import annotations

import asyncio

from tests.voice.test_sip_wire import peer

from runwire.voice import calls
from runwire.voice.ivr.menu import parse_menu
from runwire.voice.ivr.server import serving_menu
from runwire.voice.sip import sdp
from runwire.voice.sip.agent import IncomingCall, SipCall, SipUserAgent
from runwire.voice.sip.message import SipRequest, SipResponse, parse, response_to

DEADLINE_S = 5.0
AGENTS = "sip:agents@example.com"


async def test_the_answering_side_transfers_and_the_caller_reports_it() -> None:
    transferred: asyncio.Future[tuple[bool, SipCall]] = asyncio.get_running_loop().create_future()

    async def on_call(incoming: IncomingCall) -> None:
        call = await incoming.answer()
        transferred.set_result((await call.transfer(AGENTS), call))

    async with (
        SipUserAgent.bound(user="ivr") as server,
        server.serving(on_call),
        SipUserAgent.bound() as client,
    ):
        request = calls.DialRequest(f"sip:ivr@127.0.0.1:{server.port}")
        async with client.dial(request, lambda _: None) as call:
            heard = call.media.heard()
            async with asyncio.timeout(DEADLINE_S):
                accepted, far = await transferred
                async for _ in heard:  # ends with the transferor's BYE
                    pass
            assert call.ended == calls.Ended(calls.HungUpBy.FAR_END, "REFER", AGENTS)
    assert accepted
    assert far.transfer_result == "SIP/2.0 200 OK"  # the NOTIFY's sipfrag
    assert far.ended == calls.Ended(calls.HungUpBy.US, "BYE")


async def test_the_caller_answers_refer_with_202_and_a_terminating_notify() -> None:
    async with peer() as far, SipUserAgent.bound() as agent:
        port = agent.address[1]

        async def request() -> SipRequest:
            message = parse((await far.receive())[0])
            assert isinstance(message, SipRequest)
            return message

        async def response() -> SipResponse:
            message = parse((await far.receive())[0])
            assert isinstance(message, SipResponse)
            return message

        async def transferor() -> tuple[SipResponse, SipRequest, SipResponse]:
            invite = await request()
            contact = ("Contact", f"<sip:ivr@127.0.0.1:{far.port}>")
            ok = response_to(
                invite,
                200,
                to_tag="far",
                extra=(contact, ("Content-Type", "application/sdp")),
                body=sdp.describe("127.0.0.1", 40000, ("PCMU",)),
            )
            far.send(ok.encode(), port)
            assert (await request()).method == "ACK"

            def in_dialog(method: str, cseq: int, *extra: tuple[str, str]) -> bytes:
                return SipRequest(
                    method=method,
                    uri=f"sip:runwire@127.0.0.1:{port}",
                    headers=(
                        ("Via", f"SIP/2.0/UDP 127.0.0.1:{far.port};branch=z9hG4bK{method}"),
                        ("From", ok.need("To")),
                        ("To", invite.need("From")),
                        ("Call-ID", invite.call_id),
                        ("CSeq", f"{cseq} {method}"),
                        *extra,
                    ),
                ).encode()

            refer = in_dialog("REFER", 1, ("Refer-To", f"<{AGENTS}>"), contact)
            far.send(refer, port)
            accepted = await response()
            far.send(refer, port)  # a retransmission: the 202 again, no second NOTIFY
            # The NOTIFY and the second 202, in whichever order they come.
            two = [parse((await far.receive())[0]) for _ in range(2)]
            [notify] = [message for message in two if isinstance(message, SipRequest)]
            assert [m.status for m in two if isinstance(m, SipResponse)] == [202]
            far.send(response_to(notify, 200).encode(), port)
            far.send(in_dialog("BYE", 2), port)
            bye_ok = await response()
            assert far.protocol.queue.empty()  # one NOTIFY only
            return accepted, notify, bye_ok

        async with asyncio.timeout(DEADLINE_S):
            answering = asyncio.create_task(transferor())
            target = calls.DialRequest(f"sip:ivr@127.0.0.1:{far.port}")
            async with agent.dial(target, lambda _: None) as call:
                accepted, notify, bye_ok = await answering
                assert call.ended == calls.Ended(calls.HungUpBy.FAR_END, "REFER", AGENTS)
    assert (accepted.status, accepted.cseq) == (202, (1, "REFER"))
    assert notify.method == "NOTIFY"
    assert notify.uri == f"sip:ivr@127.0.0.1:{far.port}"
    assert notify.header("Event") == "refer"
    assert notify.header("Subscription-State") == "terminated;reason=noresource"
    assert notify.header("Content-Type") == "message/sipfrag;version=2.0"
    assert notify.body == b"SIP/2.0 200 OK\r\n"
    assert (bye_ok.status, bye_ok.cseq) == (200, (2, "BYE"))


async def test_the_ivr_simulator_refers_a_sip_caller() -> None:
    node = {"say": "Hold.", "transfer": {"hold_ms": 100, "refer": AGENTS}}
    menu = parse_menu({"name": "refer", "start": "hold", "nodes": {"hold": node}})
    lines: list[str] = []
    async with (
        serving_menu(menu, "127.0.0.1", 0, lines.append) as (_, server),
        SipUserAgent.bound() as client,
    ):
        request = calls.DialRequest(f"sip:ivr@127.0.0.1:{server.port}")
        async with client.dial(request, lambda _: None) as call:
            async with asyncio.timeout(DEADLINE_S):
                async for _ in call.media.heard():  # ends with the IVR's BYE
                    pass
            assert call.ended == calls.Ended(calls.HungUpBy.FAR_END, "REFER", AGENTS)
    assert any(line.endswith(f"hold: transferred to {AGENTS}") for line in lines), lines
