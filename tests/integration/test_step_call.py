"""The call step with the `simulated` driver against IVR menus (the shipped bank, and short ones
written here), in real time.

Each call hears real TTS prompts, sends real DTMF (RFC 4733 events or in-band tones) and speech,
and recognizes what it hears offline; prompts are short so a call takes a few seconds.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.support.steps import RecordingContext, wait_for

from runwire.domain.calls import CallEvent, CallEventType
from runwire.runner.steps import STEP_KINDS, StepResult
from runwire.voice.ivr.menu import find_menu, load_menu
from runwire.voice.ivr.server import serving_menu

# Phrases the offline recognizer finds reliably in the bank menu's synthetic prompts: short
# single words do poorly, two or three words well (runwire/voice/asr.py).
WELCOME = {"transcript_contains": "press one for balances"}


# The bank's path in one sentence a prompt: the call step's own behaviour is what these tests
# look at, and each second of prompt is a second of real-time audio to hear. The shipped bank
# itself is called in test_the_sip_driver_calls_the_ivr_simulator_over_loopback. As in
# broken-bank, 2 (cards) plays the balances prompt.
SHORT_BANK = """
name: short-bank
answer_after_ms: 200
words_per_minute: 220
no_input_ms: 2500
start: welcome
nodes:
  welcome:
    say: Press 1 for balances.
    menu: {dtmf: {"1": balances, "2": balances}}
    no_input: goodbye
    invalid: goodbye
  balances:
    say: Anything else? Say yes or no.
    menu: {dtmf: {"1": welcome}}
    no_input: goodbye
    invalid: goodbye
  goodbye: {say: Goodbye., hangup: true}
"""


@pytest.fixture
def short_bank(tmp_path: Path) -> str:
    menu = tmp_path / "short-bank.yaml"
    menu.write_text(SHORT_BANK)
    return str(menu)


def script(target: str, *actions: Any, **extra: Any) -> dict[str, Any]:
    return {"dial": {"target": target, "driver": "simulated"}, "actions": list(actions), **extra}


async def call(params: dict[str, Any], context: RecordingContext | None = None) -> StepResult:
    kind = STEP_KINDS["call"]
    return await kind.run(kind.parse(params, "with"), context or RecordingContext())


def moments(context: RecordingContext) -> list[str]:
    return [event.call.value for event in context.call_events]


def of_type(context: RecordingContext, moment: CallEventType) -> list[CallEvent]:
    return [event for event in context.call_events if event.call is moment]


async def test_a_menu_path_is_heard_pressed_matched_and_recorded(short_bank: str) -> None:
    context = RecordingContext()
    result = await call(
        script(
            short_bank,
            {"listen": {"timeout": 3}},
            {"expect": WELCOME},
            {"press": "1"},
            {"listen": {"timeout": 3}},
            {"expect": {"intent_is": "balance", "latency_below_ms": 3000}},
            {"hangup": True},
            intents={"balance": ["anything else"], "agent": ["hold for an agent"]},
        ),
        context,
    )
    assert result.error is None, result.error
    assert moments(context) == [
        "DIALING",
        "RINGING",
        "ANSWERED",
        "PROMPT",
        "MATCHED",
        "DTMF_SENT",
        "PROMPT",
        "MATCHED",
        "HUNG_UP",
    ]
    first, second = of_type(context, CallEventType.PROMPT)
    assert first.transcript == "press one for balances"
    assert first.confidence is not None
    assert 0 < first.confidence <= 1
    assert first.audio_started_ms is not None
    assert first.audio_ended_ms is not None
    assert 0 <= first.audio_started_ms < first.audio_ended_ms
    assert second.intent == "balance"
    [pressed] = of_type(context, CallEventType.DTMF_SENT)
    assert (pressed.digits, pressed.method, pressed.action) == ("1", "rfc4733", 2)
    [matched] = of_type(context, CallEventType.MATCHED)[1:]
    assert (matched.matched or "").startswith("intent balance")
    [hung_up] = of_type(context, CallEventType.HUNG_UP)
    assert (hung_up.by, hung_up.cause) == ("US", "BYE")

    figures = result.output["call"]
    assert figures["answered"] is True
    assert figures["time_to_answer_ms"] >= 150  # the menu answers after 200 ms
    assert 0 <= figures["time_to_first_prompt_ms"] < 1000
    assert len(figures["latency_ms"]) == 2
    assert figures["latency_p50_ms"] is not None
    assert figures["duration_ms"] > first.audio_ended_ms
    assert 0 < figures["confidence_min"] <= figures["confidence_mean"] <= 1
    assert [turn["transcript"] for turn in result.output["turns"]] == [
        first.transcript,
        second.transcript,
    ]
    assert result.observed is not None
    assert result.observed.latency_ms == max(figures["latency_ms"])
    # One span per action, and the dial.
    names = [span["name"] for span in context.spans]
    assert names == ["dial", "listen", "expect", "press", "listen", "expect", "hangup"]
    assert all(span["kind"] == "call" for span in context.spans)

    media_type, wav = context.artifacts["call.wav"]
    assert media_type == "audio/wav"
    assert wav[:4] == b"RIFF"
    assert wav[22] == 2
    transcript = context.artifacts["transcript.txt"][1].decode()
    assert "→ pressed 1" in transcript
    assert "IVR: " in transcript


async def test_speech_is_sent_into_the_call_and_the_ivr_answers_it(tmp_path: Path) -> None:
    # A menu that answers whatever it hears (here: not an option) with goodbye.
    menu = tmp_path / "ask.yaml"
    menu.write_text(
        "name: ask\nanswer_after_ms: 0\nstart: ask\nnodes:\n"
        "  ask: {say: Say something., menu: {dtmf: {'1': bye}}, invalid: bye, no_input: bye}\n"
        "  bye: {say: Goodbye., hangup: true}\n"
    )
    context = RecordingContext()
    result = await call(
        script(
            str(menu),
            {"listen": {"timeout": 10, "phrases": ["say something"]}},
            {"say": "agent please"},
            {"listen": {"timeout": 10, "phrases": ["goodbye"]}},
        ),
        context,
    )
    assert result.error is None, result.error
    [said] = of_type(context, CallEventType.SPEECH_SENT)
    assert (said.text, said.action) == ("agent please", 1)
    # The IVR answered what it heard (whatever its own recognizer made of it). Each listen ends
    # when it hears its phrase; the 10 s are room for a loaded machine's recognizers, and how
    # fast the answer comes is V1's to measure (bench/calls.py), not this test's.
    answer = of_type(context, CallEventType.PROMPT)[1]
    assert answer.latency_ms is not None
    assert answer.latency_ms < 10_000
    assert said.at_ms is not None
    assert answer.audio_started_ms is not None
    assert answer.audio_started_ms > said.at_ms
    # What was said is in the recording's sent channel: speech, where the rest is silence.
    wav = context.artifacts["call.wav"][1]
    frames = np.frombuffer(wav[44:], dtype="<i2").reshape(-1, 2)
    sent = frames[:, 0].astype(np.float64)
    start, end = int(said.at_ms / 1000 * 8000) - 4000, int(said.at_ms / 1000 * 8000)
    assert np.sqrt(np.mean(sent[start:end] ** 2)) > 100
    assert np.sqrt(np.mean(sent[:4000] ** 2)) < 10  # before it: silence
    assert of_type(context, CallEventType.HUNG_UP)[0].by == "FAR_END"  # after its goodbye


async def test_an_expect_that_fails_names_the_action_and_what_was_heard(short_bank: str) -> None:
    context = RecordingContext()
    result = await call(
        script(
            short_bank,
            {"listen": {"timeout": 3, "phrases": ["press one for balances"]}},
            {"press": {"digits": "2", "method": "inband"}},
            {"listen": {"timeout": 3, "phrases": ["anything else", "say yes or no"]}},
            {"expect": {"transcript_contains": "for a lost card"}},
            {"hangup": True},
        ),
        context,
    )
    assert result.error is not None
    assert result.error.startswith(
        "actions[3] expect: transcript does not contain 'for a lost card'; heard at actions[2]: '"
    )
    assert "'anything else say yes or no' (confidence 0." in result.error
    assert "MATCHED" not in moments(context)
    assert of_type(context, CallEventType.DTMF_SENT)[0].method == "inband"
    assert moments(context)[-1] == "HUNG_UP"  # hung up all the same
    assert "call.wav" in context.artifacts


@pytest.mark.parametrize(
    ("target", "status"),
    [("nobody@bank", 404), ("busy", 486), ("no-such-menu", 404)],
)
async def test_a_call_that_is_not_answered_fails_with_its_sip_status(
    tmp_path: Path, target: str, status: int
) -> None:
    if target == "busy":
        menu = tmp_path / "busy.yaml"
        menu.write_text(
            "name: busy\nbusy: true\nstart: hello\nnodes:\n  hello: {say: Hello., hangup: true}\n"
        )
        target = str(menu)
    context = RecordingContext()
    result = await call(script(target, {"hangup": True}), context)
    assert result.error is not None
    assert result.error.startswith(f"the call failed: {status} ")
    assert moments(context)[-1] == "FAILED"
    [failed] = of_type(context, CallEventType.FAILED)
    assert failed.sip_status == status
    assert failed.reason
    assert result.output["call"]["answered"] is False
    assert result.output["call"]["sip_status"] == status
    assert "call.wav" not in context.artifacts


async def test_a_stop_mid_call_hangs_up_keeps_the_recording_and_leaves_nothing() -> None:
    context = RecordingContext()
    task = asyncio.create_task(call(script("bank", {"wait": 10}), context))
    await wait_for(lambda: "ANSWERED" in moments(context), 5)
    await asyncio.sleep(0.3)  # some prompt audio to record
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [hung_up] = of_type(context, CallEventType.HUNG_UP)
    assert (hung_up.by, hung_up.cause) == ("US", "BYE")
    _, wav = context.artifacts["call.wav"]
    assert len(wav) > 44 + 2 * 2 * 8000 * 0.2  # header + 0.2 s of two 16-bit channels
    assert context.spans[-1]["status"] == "CANCELLED"
    # The simulated IVR's task ended with the call.
    leftovers = [t for t in asyncio.all_tasks() if t.get_name() == "simulated-ivr"]
    assert not [t for t in leftovers if not t.done()]


async def test_the_whole_call_timeout_hangs_up() -> None:
    context = RecordingContext()
    result = await call(script("bank", {"wait": 5}, timeout=1), context)
    assert result.error == "the call timed out after 1 s"
    assert of_type(context, CallEventType.HUNG_UP)[0].by == "US"
    assert "call.wav" in context.artifacts


async def test_an_action_timeout_fails_the_step_naming_the_action() -> None:
    result = await call(script("bank", {"wait": 5, "timeout": 0.3}))
    assert result.error == "actions[0] (wait) timed out after 0.3 s"


async def test_the_far_end_hanging_up_is_reported(tmp_path: Path) -> None:
    menu = tmp_path / "bye.yaml"
    menu.write_text(
        "name: bye\nanswer_after_ms: 0\nstart: bye\nnodes:\n  bye: {say: Goodbye., hangup: true}\n"
    )
    context = RecordingContext()
    listen = {"listen": {"timeout": 3, "phrases": ["goodbye"]}}
    result = await call(script(str(menu), listen, listen, {"press": "1"}), context)
    assert result.error is not None
    assert result.error.startswith("actions[1] (listen): the far end hung up before it (BYE)")
    [hung_up] = of_type(context, CallEventType.HUNG_UP)
    assert (hung_up.by, hung_up.cause) == ("FAR_END", "BYE")
    assert result.output["call"]["hung_up_by"] == "FAR_END"
    assert "hung up by far end" in context.artifacts["transcript.txt"][1].decode()


async def test_a_transfer_is_reported_before_the_hang_up_and_can_be_expected(
    tmp_path: Path,
) -> None:
    agents = "sip:agents@example.com"
    menu = tmp_path / "refer.yaml"
    menu.write_text(
        "name: refer\nanswer_after_ms: 0\nstart: hold\nnodes:\n"
        f"  hold: {{say: Hold., transfer: {{hold_ms: 100, refer: '{agents}'}}}}\n"
    )
    context = RecordingContext()
    result = await call(script(str(menu), {"expect": {"transferred_to": agents}}), context)
    assert result.error is None, result.error
    assert moments(context)[3:] == ["TRANSFERRED", "HUNG_UP", "MATCHED"]
    [transferred] = of_type(context, CallEventType.TRANSFERRED)
    assert transferred.target == agents
    [hung_up] = of_type(context, CallEventType.HUNG_UP)
    assert (hung_up.by, hung_up.cause) == ("FAR_END", "REFER")
    [matched] = of_type(context, CallEventType.MATCHED)
    assert matched.matched == f"transferred to {agents}"
    assert result.output["call"]["transferred_to"] == agents
    assert f"↪ transferred to {agents}" in context.artifacts["transcript.txt"][1].decode()

    elsewhere = {"expect": {"transferred_to": "sip:sales@example.com"}}
    result = await call(script(str(menu), elsewhere))
    assert result.error == (
        f"actions[0] expect: the call was transferred to {agents}, not sip:sales@example.com"
    )


async def test_the_sip_driver_calls_the_ivr_simulator_over_loopback() -> None:
    # The same menu behind `runwire ivr-sim`: real SIP and RTP on 127.0.0.1.
    port = free_udp_port()
    log: list[str] = []
    async with serving_menu(load_menu(find_menu("bank")), "127.0.0.1", port, log.append):
        context = RecordingContext()
        result = await call(
            {
                "dial": {"target": f"sip:bank@127.0.0.1:{port}", "driver": "sip"},
                "actions": [
                    {"listen": {"timeout": 3}},
                    {"expect": WELCOME},
                    {"press": "1"},
                    {"hangup": True},
                ],
            },
            context,
        )
        refused = await call(script_for_sip(port, "nobody"), RecordingContext())
        # A stop mid-call: our BYE reaches the IVR, and the recording so far is kept.
        stopped = RecordingContext()
        held = {"dial": {"target": f"sip:bank@127.0.0.1:{port}", "driver": "sip"}}
        task = asyncio.create_task(call({**held, "actions": [{"wait": 10}]}, stopped))
        await wait_for(lambda: "ANSWERED" in moments(stopped), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_for(lambda: any(line.endswith("hung up by caller") for line in log), 5)
    assert of_type(stopped, CallEventType.HUNG_UP)[0].by == "US"
    assert "call.wav" in stopped.artifacts
    assert result.error is None, result.error
    assert moments(context)[:3] == ["DIALING", "RINGING", "ANSWERED"]
    assert moments(context)[-1] == "HUNG_UP"
    assert of_type(context, CallEventType.PROMPT)[0].transcript == "press one for balances"
    assert context.artifacts["call.wav"][1][:4] == b"RIFF"
    assert refused.error is not None
    assert refused.error.startswith("the call failed: 404 ")


def script_for_sip(port: int, extension: str) -> dict[str, Any]:
    target = f"sip:{extension}@127.0.0.1:{port}"
    return {"dial": {"target": target, "driver": "sip"}, "actions": [{"hangup": True}]}


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
