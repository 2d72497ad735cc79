"""Our SIP user agent against SIPp, an independent SIP implementation, over loopback UDP."""

from __future__ import annotations

import asyncio
import math
import shutil
import socket
import struct
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from runwire.voice import calls
from runwire.voice.codecs import ulaw_decode, ulaw_encode
from runwire.voice.media import AudioFrame, DigitHeard, DigitMethod
from runwire.voice.sip.agent import IncomingCall, SipUserAgent

SIPP = shutil.which("sipp")
pytestmark = pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed")

PATTERN = struct.pack("<800h", *(int(8000 * math.sin(math.pi * n / 4)) for n in range(800)))
"""100 ms of a 1 kHz tone."""

BUSY_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="busy">
  <recv request="INVITE" crlf="true"/>
  <send>
    <![CDATA[
      SIP/2.0 486 Busy Here
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
</scenario>
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int) -> bool:
    """Whether some socket is bound to 127.0.0.1:port (read from /proc, so we never race it)."""
    wanted = f"0100007F:{port:04X}"
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return any(line.split()[1] == wanted for line in lines)


@asynccontextmanager
async def sipp(tmp_path: Path, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """SIPp in the foreground (one call unless `-m` says); killed on exit if still running."""
    assert SIPP is not None
    process = await asyncio.create_subprocess_exec(
        SIPP,
        *args,
        *(() if "-m" in args else ("-m", "1")),
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(tmp_path / "sipp-errors.log"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def finished(process: asyncio.subprocess.Process, tmp_path: Path) -> None:
    """SIPp ended with every call successful (exit status 0)."""
    async with asyncio.timeout(8):
        status = await process.wait()
    errors = tmp_path / "sipp-errors.log"
    assert status == 0, errors.read_text() if errors.exists() else f"sipp exited {status}"


async def until_listening(port: int) -> None:
    async with asyncio.timeout(5):
        while not listening(port):
            await asyncio.sleep(0.02)


async def test_we_call_sipps_uas_hear_our_audio_echoed_and_hang_up(tmp_path: Path) -> None:
    port, media_port = free_port(), free_port()
    # SIPp's own uas scenario (-sd prints it, then exits 99), less the 4 s it waits after
    # answering the BYE (for a repeat).
    assert SIPP is not None
    built_in = await asyncio.to_thread(
        subprocess.run, [SIPP, "-sd", "uas"], capture_output=True, text=True, check=False
    )
    assert '<timewait milliseconds="4000"/>' in built_in.stdout
    scenario = tmp_path / "uas.xml"
    scenario.write_text(built_in.stdout.replace('milliseconds="4000"', 'milliseconds="0"'))
    args = ("-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port), "-mp", str(media_port))
    args = (*args, "-rtp_echo")
    async with sipp(tmp_path, *args) as process:
        await until_listening(port)
        seen: list[calls.Progress] = []
        async with SipUserAgent.bound() as agent:
            request = calls.DialRequest(f"sip:service@127.0.0.1:{port}")
            async with agent.dial(request, seen.append) as call:
                assert seen == [
                    calls.Progress.DIALING,
                    calls.Progress.RINGING,
                    calls.Progress.ANSWERED,
                ]
                heard = call.media.heard()
                await call.media.play(PATTERN)
                # SIPp's answer has no telephone-event, so digits go in-band (and come back).
                await call.media.send_digits("4", DigitMethod.RFC4733, tone_ms=80, gap_ms=40)
                voiced, digits = b"", ""
                async with asyncio.timeout(5):
                    async for item in heard:
                        if isinstance(item, AudioFrame) and any(item.pcm):
                            voiced += item.pcm
                        elif isinstance(item, DigitHeard):
                            digits += item.digit
                            break
                assert voiced[: len(PATTERN)] == ulaw_decode(ulaw_encode(PATTERN))
                assert digits == "4"
                assert call.ended is None
            assert call.ended == calls.Ended(calls.HungUpBy.US, "BYE")
        # SIPp's uas scenario only succeeds once it has answered our BYE.
        await finished(process, tmp_path)


async def test_sipps_uac_calls_us_five_at_once_and_hangs_up(tmp_path: Path) -> None:
    answered: list[calls.Call] = []

    async def answer(incoming: IncomingCall) -> None:
        assert incoming.request_uri.startswith("sip:service@127.0.0.1:")
        await incoming.ring()
        call = await incoming.answer()
        answered.append(call)
        async for _ in call.media.heard():
            pass  # until SIPp's BYE ends the media

    async with SipUserAgent.bound() as agent, agent.serving(answer):
        host, port = agent.address
        args = ("-sn", "uac", f"{host}:{port}", "-s", "service", "-i", "127.0.0.1")
        concurrently = ("-m", "5", "-l", "5", "-r", "50", "-d", "200")
        async with sipp(tmp_path, *args, *concurrently, "-p", str(free_port())) as process:
            await finished(process, tmp_path)
        assert len(answered) == 5
        assert {call.ended for call in answered} == {calls.Ended(calls.HungUpBy.FAR_END, "BYE")}


async def test_a_sipp_that_answers_busy_fails_the_call_with_486(tmp_path: Path) -> None:
    scenario = tmp_path / "busy.xml"
    scenario.write_text(BUSY_SCENARIO)
    port = free_port()
    async with sipp(tmp_path, "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port)) as process:
        await until_listening(port)
        async with SipUserAgent.bound() as agent:
            request = calls.DialRequest(f"sip:service@127.0.0.1:{port}")
            with pytest.raises(calls.CallFailed) as failed:
                async with agent.dial(request, lambda _: None):
                    pytest.fail("answered")
            assert (failed.value.status, failed.value.reason) == (486, "Busy Here")
        await finished(process, tmp_path)
