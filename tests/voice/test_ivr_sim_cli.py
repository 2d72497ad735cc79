"""`runwire ivr-sim` as a real process, called over real SIP/RTP on loopback by our user agent."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from runwire.voice.calls import CallFailed, DialRequest, HungUpBy, Progress
from runwire.voice.media import AudioFrame, DigitMethod, MediaLeg
from runwire.voice.sip.agent import SipUserAgent

MENU = {
    "name": "tiny",
    "extension": "tiny",
    "answer_after_ms": 100,
    "words_per_minute": 260,
    "no_input_ms": 3000,
    "start": "hello",
    "nodes": {
        "hello": {"say": "Press 1.", "menu": {"dtmf": {"1": "bye"}}},
        "bye": {"say": "Goodbye.", "hangup": True},
    },
}


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Simulator:
    """The running `runwire ivr-sim` process and the lines it has logged."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.lines: list[str] = []
        self._more = asyncio.Event()

    async def read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            self.lines.append(raw.decode().rstrip("\n"))
            self._more.set()
        self._more.set()

    async def line(self, containing: str, timeout: float = 10.0) -> str:
        """The first logged line containing `containing`, waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if containing in line:
                    return line
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no line with {containing!r} in {self.lines}"
            self._more.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._more.wait(), remaining)


@contextlib.asynccontextmanager
async def ivr_sim(menu_file: Path) -> AsyncIterator[Simulator]:
    port = free_udp_port()
    runwire = str(Path(sys.executable).parent / "runwire")
    process = await asyncio.create_subprocess_exec(
        runwire,
        "ivr-sim",
        "--menu",
        str(menu_file),
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    simulator = Simulator(process, port)
    reader = asyncio.create_task(simulator.read())
    try:
        await simulator.line("answering", timeout=15)
        yield simulator
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 10)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await reader


@pytest.fixture
def menu_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(MENU))
    return path


async def wait_for_prompt_end(media: MediaLeg, quiet_ms: int = 400) -> None:
    """Hear the IVR's audio start, then `quiet_ms` of silence after it."""
    spoken = False
    quiet = 0
    async for item in media.heard():
        if not isinstance(item, AudioFrame):
            continue
        loud = (
            max(
                abs(int.from_bytes(item.pcm[i : i + 2], "little", signed=True))
                for i in range(0, len(item.pcm), 2)
            )
            > 500
        )
        if loud:
            spoken, quiet = True, 0
        elif spoken:
            quiet += 20
            if quiet >= quiet_ms:
                return


async def test_answers_a_call_logs_what_it_heard_and_hangs_up(menu_file: Path) -> None:
    async with ivr_sim(menu_file) as sim, SipUserAgent.bound() as agent:
        progress: list[Progress] = []
        request = DialRequest(target=f"sip:tiny@127.0.0.1:{sim.port}", answer_timeout_seconds=5)
        async with agent.dial(request, progress.append) as call:
            await asyncio.wait_for(wait_for_prompt_end(call.media), 10)
            await call.media.send_digits("1", DigitMethod.RFC4733)
            deadline = time.monotonic() + 10
            while call.ended is None:
                assert time.monotonic() < deadline, "the IVR did not hang up"
                await asyncio.sleep(0.05)
            assert call.ended.by is HungUpBy.FAR_END
        assert progress[0] is Progress.DIALING
        assert progress[-1] is Progress.ANSWERED
        await sim.line('hello: heard "1" (DTMF)')
        await sim.line('bye: said "Goodbye."')
        await sim.line("hung up by ivr")


async def test_another_extension_gets_404_and_sigint_ends_the_process(menu_file: Path) -> None:
    async with ivr_sim(menu_file) as sim, SipUserAgent.bound() as agent:
        request = DialRequest(target=f"sip:sales@127.0.0.1:{sim.port}", answer_timeout_seconds=5)
        with pytest.raises(CallFailed) as failed:
            async with agent.dial(request, lambda _: None):
                pass
        assert failed.value.status == 404
        await sim.line("rejected: 404 Not Found")
        sim.process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(sim.process.wait(), 10) == 0
        await sim.line("ivr-sim: stopped")


async def test_sigint_hangs_up_a_live_call_with_bye(menu_file: Path) -> None:
    async with ivr_sim(menu_file) as sim, SipUserAgent.bound() as agent:
        request = DialRequest(target=f"sip:tiny@127.0.0.1:{sim.port}", answer_timeout_seconds=5)
        async with agent.dial(request, lambda _: None) as call:
            await sim.line('hello: said "Press 1."')
            sim.process.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(sim.process.wait(), 10) == 0
            assert call.ended is not None
            assert call.ended.by is HungUpBy.FAR_END
        await sim.line("hanging up: the simulator is stopping")


async def test_a_menu_that_does_not_check_stops_it_before_it_answers(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**MENU, "start": "nowhere"}))
    runwire = str(Path(sys.executable).parent / "runwire")
    process = await asyncio.create_subprocess_exec(
        runwire,
        "ivr-sim",
        "--menu",
        str(path),
        "--port",
        str(free_udp_port()),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 1
    assert "start: unknown node 'nowhere'" in stderr.decode()


async def test_the_caller_hanging_up_ends_the_ivr_call(menu_file: Path) -> None:
    async with ivr_sim(menu_file) as sim, SipUserAgent.bound() as agent:
        request = DialRequest(target=f"sip:tiny@127.0.0.1:{sim.port}", answer_timeout_seconds=5)
        async with agent.dial(request, lambda _: None):
            await sim.line('hello: said "Press 1."')
        await sim.line("hello: hung up by caller")
