"""The IVR simulator over a MediaPipe: real TTS prompts, DTMF both ways, spoken keywords
recognized offline, reprompts, transfers, hang-ups from either side; and the simulated driver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from runwire.voice.calls import CallFailed, DialRequest, Ended, HungUpBy, Progress
from runwire.voice.ivr.menu import Menu, parse_menu
from runwire.voice.ivr.simulator import EventKind, HeardKind, IvrEvent, IvrSimulator, Prompts
from runwire.voice.listening import hear
from runwire.voice.media import DigitMethod, MediaLeg
from runwire.voice.pipe import MediaPipe
from runwire.voice.simulated import SimulatedDriver
from runwire.voice.tts import Speaker

MENU: dict[str, Any] = {
    "name": "tiny",
    "words_per_minute": 260,
    "no_input_ms": 1500,
    "end_silence_ms": 400,
    "start": "hello",
    "nodes": {
        "hello": {
            "say": "Press 1.",
            "menu": {
                "dtmf": {"1": "bye", "2": "hello"},
                "keywords": {"agent": "agent", "balance": "bye"},
            },
            "no_input": {"retries": 1, "reprompt": "Sorry.", "goto": "bye"},
            "invalid": "bye",
        },
        "agent": {
            "say": "Please hold.",
            "transfer": {"queue": "agents", "hold_ms": 400, "connected": "Connected."},
        },
        "bye": {"say": "Goodbye.", "hangup": True},
    },
}

# One cache for the module, as a server shares one across its calls.
PROMPTS = Prompts(words_per_minute=260)


async def prompt(media: MediaLeg) -> None:
    """Listen to the IVR until its prompt has ended."""
    utterance = await hear(media.heard(), start_timeout=5, end_silence_ms=300)
    assert utterance.speech_started is not None, "the IVR said nothing"


@asynccontextmanager
async def running(
    menu: Menu,
) -> AsyncIterator[tuple[MediaPipe, IvrSimulator, asyncio.Task[HungUpBy]]]:
    async with MediaPipe.open() as pipe:
        simulator = IvrSimulator(menu, pipe.far, prompts=PROMPTS)
        task = asyncio.create_task(simulator.run())
        try:
            yield pipe, simulator, task
        finally:
            task.cancel()
            await asyncio.wait((task,))


async def finished(task: asyncio.Task[HungUpBy], timeout: float = 10) -> HungUpBy:
    return await asyncio.wait_for(task, timeout)


def kinds(simulator: IvrSimulator) -> list[tuple[EventKind, str]]:
    return [
        (event.kind, event.text if event.kind is not EventKind.HEARD else "")
        for event in simulator.events
    ]


@pytest.mark.parametrize("method", [DigitMethod.RFC4733, DigitMethod.INBAND])
async def test_navigates_by_dtmf_and_hangs_up(method: DigitMethod) -> None:
    async with running(parse_menu(MENU)) as (pipe, simulator, task):
        await prompt(pipe.near)
        await pipe.near.send_digits("1", method)
        assert await finished(task) is HungUpBy.US
    [heard] = simulator.heard
    assert (heard.node, heard.kind, heard.digits, heard.choice) == (
        "hello",
        HeardKind.DTMF,
        "1",
        "1",
    )
    assert kinds(simulator) == [
        (EventKind.PROMPT, "Press 1."),
        (EventKind.HEARD, ""),
        (EventKind.PROMPT, "Goodbye."),
        (EventKind.HUNG_UP, "ivr"),
    ]
    sent, _ = pipe.far.recording()
    assert any(sent)  # the prompts were real audio


async def test_a_spoken_keyword_transfers_to_the_queue() -> None:
    said = await asyncio.to_thread(Speaker().speak, "agent")
    async with running(parse_menu(MENU)) as (pipe, simulator, task):
        await prompt(pipe.near)
        await pipe.near.play(said)
        assert await finished(task) is HungUpBy.US
    [heard] = simulator.heard
    assert heard.kind is HeardKind.SPEECH
    assert heard.transcript == "agent"
    assert heard.choice == "agent"
    assert heard.confidence is not None
    assert heard.started is not None
    assert heard.ended is not None
    assert heard.started < heard.ended
    assert [kind for kind, _ in kinds(simulator)] == [
        EventKind.PROMPT,
        EventKind.HEARD,
        EventKind.PROMPT,
        EventKind.HOLD,
        EventKind.TRANSFERRED,
        EventKind.PROMPT,
        EventKind.HUNG_UP,
    ]


async def test_reprompts_on_no_input_then_gives_up() -> None:
    menu = parse_menu({**MENU, "no_input_ms": 300})
    async with running(menu) as (_, simulator, task):
        assert await finished(task) is HungUpBy.US
    assert simulator.heard == []
    assert kinds(simulator) == [
        (EventKind.PROMPT, "Press 1."),
        (EventKind.NO_INPUT, ""),
        (EventKind.PROMPT, "Sorry."),
        (EventKind.PROMPT, "Press 1."),
        (EventKind.NO_INPUT, ""),
        (EventKind.PROMPT, "Goodbye."),
        (EventKind.HUNG_UP, "ivr"),
    ]


async def test_an_unknown_digit_is_invalid_and_type_ahead_is_kept() -> None:
    async with running(parse_menu(MENU)) as (pipe, simulator, task):
        # Pressed during the prompt: kept for the menu, as a real IVR does.
        await pipe.near.send_digits("29", DigitMethod.RFC4733, tone_ms=60, gap_ms=60)
        assert await finished(task) is HungUpBy.US
    assert [(heard.digits, heard.choice) for heard in simulator.heard] == [("2", "2"), ("9", None)]
    assert (EventKind.INVALID, "") in kinds(simulator)


async def test_the_caller_hanging_up_ends_it_at_once() -> None:
    async with running(parse_menu(MENU)) as (pipe, simulator, task):
        while not simulator.events:
            await asyncio.sleep(0.02)
        started = time.monotonic()
        pipe.end()
        assert await finished(task, 2) is HungUpBy.FAR_END
        assert time.monotonic() - started < 0.5
    assert simulator.events[-1].kind is EventKind.HUNG_UP
    assert simulator.events[-1].text == "caller"


async def test_cancelling_it_leaves_no_task_behind() -> None:
    before = asyncio.all_tasks()
    async with running(parse_menu(MENU)) as (_, simulator, task):
        while not simulator.events:
            await asyncio.sleep(0.02)
        task.cancel()
        await asyncio.wait((task,))
        assert task.cancelled()
    assert asyncio.all_tasks() - before == set()


@pytest.fixture
def menu_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**MENU, "extension": "tiny", "answer_after_ms": 100}))
    return path


async def test_the_simulated_driver_dials_a_menu(menu_file: Path) -> None:
    driver = SimulatedDriver()
    progress: list[Progress] = []
    async with driver.dial(DialRequest(f"tiny@{menu_file}"), progress.append) as call:
        assert progress == [Progress.DIALING, Progress.RINGING, Progress.ANSWERED]
        await prompt(call.media)
        await call.media.send_digits("1", DigitMethod.INBAND)
        deadline = time.monotonic() + 10
        while call.ended is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert call.ended.by is HungUpBy.FAR_END
    sent, heard = call.media.recording()
    assert any(sent)
    assert any(heard)


async def test_the_simulated_driver_hangs_up_and_stops_the_ivr(menu_file: Path) -> None:
    before = asyncio.all_tasks()
    async with SimulatedDriver().dial(DialRequest(str(menu_file)), lambda _: None) as call:
        await call.hangup()
        assert call.ended is not None
        assert call.ended.by is HungUpBy.US
    assert asyncio.all_tasks() - before == set()


async def test_the_simulated_driver_fails_like_the_sip_server(
    menu_file: Path, tmp_path: Path
) -> None:
    driver = SimulatedDriver()

    async def status(target: str, timeout: float = 5) -> int:
        request = DialRequest(target, answer_timeout_seconds=timeout)
        with pytest.raises(CallFailed) as failed:
            async with driver.dial(request, lambda _: None):
                pass
        return failed.value.status

    assert await status(f"sales@{menu_file}") == 404
    assert await status("no-such-menu") == 404
    busy = tmp_path / "busy.yaml"
    busy.write_text(yaml.safe_dump({**MENU, "busy": True}))
    assert await status(str(busy)) == 486
    ringing = tmp_path / "ringing.yaml"
    ringing.write_text(yaml.safe_dump({**MENU, "answer_after_ms": 5000}))
    assert await status(str(ringing), timeout=0.2) == 408
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({**MENU, "start": "nowhere"}))
    assert await status(str(broken)) == 500


async def test_a_refer_transfers_the_simulated_call_and_hangs_up(tmp_path: Path) -> None:
    path = tmp_path / "refer.yaml"
    agents = "sip:agents@example.com"
    node = {"say": "Hold.", "transfer": {"hold_ms": 100, "refer": agents}}
    path.write_text(yaml.safe_dump({"name": "refer", "start": "hold", "nodes": {"hold": node}}))
    events: list[IvrEvent] = []
    async with SimulatedDriver(on_event=events.append).dial(
        DialRequest(str(path)), lambda _: None
    ) as call:
        deadline = time.monotonic() + 5
        while call.ended is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert call.ended == Ended(HungUpBy.FAR_END, "REFER", agents)
    assert [(event.kind, event.text) for event in events] == [
        (EventKind.PROMPT, "Hold."),
        (EventKind.HOLD, "agents"),
        (EventKind.TRANSFERRED, agents),
        (EventKind.HUNG_UP, "ivr"),
    ]
