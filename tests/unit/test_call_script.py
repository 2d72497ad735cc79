"""The call step's `with:`: the script parses strictly, naming the path of each bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runwire.errors import InvalidDefinition
from runwire.runner.steps import STEP_KINDS, CallStep
from runwire.runner.steps.call_script import (
    CallScript,
    Expect,
    Hangup,
    Listen,
    Press,
    Say,
    Wait,
    check,
    parse_script,
)
from runwire.scenarios.definition import parse_definition

DIAL = {"target": "bank", "driver": "simulated"}


def errors_of(params: Any) -> dict[str, str]:
    with pytest.raises(InvalidDefinition) as caught:
        parse_script(params, "with")
    return {error.path: error.message for error in caught.value.errors}


def test_a_full_script_parses_to_its_actions() -> None:
    script = parse_script(
        {
            "dial": {**DIAL, "caller_id": "1000", "codec": "pcma"},
            "timeout": 30,
            "intents": {"balance": ["balance", "check my balance"], "agent": "agent"},
            "actions": [
                {"listen": {"timeout": 3, "silence_ms": 500, "phrases": ["welcome"]}},
                {"expect": {"transcript_contains": "welcome", "confidence_above": 0.2}},
                {"press": "1"},
                {"press": {"digits": "12#", "method": "inband"}, "timeout": 5},
                {"say": "check my balance"},
                {"listen": None},
                {"expect": {"intent_is": "balance", "latency_below_ms": 2000}},
                {"wait": 0.5},
                {"hangup": True},
            ],
        },
        "with",
    )
    assert script.dial.codec == "PCMA"
    assert script.timeout == 30
    assert script.intents == {"balance": ("balance", "check my balance"), "agent": ("agent",)}
    steps = [action.step for action in script.actions]
    assert steps == [
        Listen(3, 500, 30.0, ("welcome",)),
        Expect(transcript_contains="welcome", confidence_above=0.2),
        Press("1"),
        Press("12#", "inband"),
        Say("check my balance"),
        Listen(),
        Expect(intent_is="balance", latency_below_ms=2000),
        Wait(0.5),
        Hangup(),
    ]
    assert script.actions[3].timeout == 5
    # A listen is recognised against the phrases of the expects that check it.
    # Its own and the expect's, once.
    assert script.phrases_for(0) == ("welcome",)
    assert script.phrases_for(5) == ("balance", "check my balance", "agent")
    check(script)


def test_an_unknown_action_or_field_names_its_path() -> None:
    found = errors_of(
        {
            "dial": {**DIAL, "nubmer": "1"},
            "actions": [
                {"listen": {"timout": 3}},
                {"expect": {"transcript_has": "x"}},
                {"prss": "1"},
                {"press": "1", "say": "hi"},
                "dance",
            ],
            "extra": 1,
        }
    )
    assert found == {
        "with.dial.nubmer": "unknown field; expected one of: account, answer_timeout, caller_id,"
        " codec, driver, target",
        "with.actions[0].listen.timout": "unknown field; expected one of: max_seconds,"
        " phrases, silence_ms, timeout",
        "with.actions[1].expect.transcript_has": "unknown field; expected one of:"
        " confidence_above, intent_is, latency_below_ms, matches, transcript_contains,"
        " transferred_to, wer_below",
        "with.actions[2].prss": "unknown action; expected one of: listen, expect, press, say,"
        " wait, hangup",
        "with.actions[3]": "one action per item, found: press, say",
        "with.actions[4]": "expected a mapping with one action: listen, expect, press, say,"
        " wait, hangup",
        "with.extra": "unknown field; expected one of: actions, dial, intents, timeout",
    }


def test_digits_outside_dtmf_are_refused_with_their_path() -> None:
    found = errors_of(
        {
            "dial": DIAL,
            "actions": [
                {"press": "12x"},
                {"press": {"digits": "a"}},
                {"press": ""},
                {"press": {"digits": "1", "method": "pulse"}},
                {"press": {"method": "inband"}},
            ],
        }
    )
    assert found == {
        "with.actions[0].press": "not DTMF digits: 'x'; expected only 0-9, *, #, A-D",
        "with.actions[1].press.digits": "not DTMF digits: 'a'; expected only 0-9, *, #, A-D",
        "with.actions[2].press": "expected at least one digit",
        "with.actions[3].press.method": "expected one of: rfc4733, inband",
        "with.actions[4].press.digits": "required",
    }
    # YAML reads `press: 1` as a number: it is the digit 1.
    script = parse_script({"dial": DIAL, "actions": [{"press": 1}]}, "with")
    assert script.actions[0].step == Press("1")


def test_bad_values_are_named() -> None:
    found = errors_of(
        {
            "dial": {"driver": "pstn", "codec": "opus", "answer_timeout": 0},
            "timeout": -1,
            "intents": {"balance": []},
            "actions": [
                {"listen": {"timeout": "soon"}},
                {"expect": {"matches": "(", "intent_is": "agent"}},
                {"expect": {"wer_below": {"text": "hi", "max": 2}, "confidence_above": 3}},
                {"expect": {}},
                {"say": ""},
                {"wait": -1},
                {"hangup": "yes"},
                {"listen": None, "timeout": 0},
            ],
        }
    )
    assert found == {
        "with.dial.target": "required",
        "with.dial.driver": "expected one of: sip, simulated",
        "with.dial.codec": "expected one of: PCMU, PCMA",
        "with.dial.answer_timeout": "must be more than 0",
        "with.timeout": "must be more than 0",
        "with.intents.balance": "expected a non-empty list of phrases",
        "with.actions[0].listen.timeout": "expected a number or a {{ template }}",
        "with.actions[1].expect.matches": "not a valid regular expression: missing ), unterminated"
        " subpattern at position 0",
        "with.actions[1].expect.intent_is": "unknown intent agent; declared: none (declare them"
        " in with.intents)",
        "with.actions[2].expect.wer_below.max": "a word error rate: a fraction from 0 to 1",
        "with.actions[2].expect.confidence_above": "a confidence: a fraction from 0 to 1",
        "with.actions[3].expect": "expected at least one of: transcript_contains, matches,"
        " wer_below, intent_is, latency_below_ms, confidence_above, transferred_to",
        "with.actions[4].say": "expected the text to speak",
        "with.actions[5].wait": "must not be negative",
        "with.actions[6].hangup": "expected true",
        "with.actions[7].timeout": "must be more than 0",
    }
    assert errors_of({"actions": []}) == {
        "with.dial": "required",
        "with.actions": "must not be empty",
    }


def test_templates_pass_the_definition_check_and_must_be_rendered_to_run() -> None:
    script = parse_script(
        {
            "dial": {"target": "{{ inputs.target }}", "driver": "{{ inputs.driver }}"},
            "actions": [
                {"press": "{{ inputs.option }}"},
                {"wait": "{{ inputs.pause }}"},
                {"expect": {"transcript_contains": "{{ inputs.heard }}"}},
            ],
        },
        "with",
    )
    assert script.actions[0].step == Press("{{ inputs.option }}")
    with pytest.raises(InvalidDefinition) as caught:
        check(script)
    assert [e.path for e in caught.value.errors] == [
        "with.dial.target",
        "with.dial.driver",
        "with.actions[0].press.digits",
        "with.actions[1].wait.seconds",
        "with.actions[2].expect.transcript_contains",
    ]


def test_account_secrets_are_names_the_step_must_list() -> None:
    step = {
        "key": "call",
        "kind": "call",
        "with": {
            "dial": {
                "target": "sip:100@127.0.0.1:5070",
                "account": {"username_secret": "SIP_USER", "password_secret": "SIP_PASS"},
            },
            "actions": [{"hangup": True}],
        },
    }
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition({"name": "x", "steps": [step]}, STEP_KINDS)
    assert [(e.path, e.message) for e in caught.value.errors] == [
        ("steps[0].with.dial.account.username_secret", "list SIP_USER in steps[0].secrets too"),
        ("steps[0].with.dial.account.password_secret", "list SIP_PASS in steps[0].secrets too"),
    ]
    listed = parse_definition(
        {"name": "x", "steps": [{**step, "secrets": ["SIP_USER", "SIP_PASS"]}]}, STEP_KINDS
    )
    assert listed.steps[0].secrets == ("SIP_USER", "SIP_PASS")
    # Names only, never a template or a value: credentials come from secrets.
    account = {"username_secret": "{{ inputs.user }}", "password_secret": "SIP_PASS"}
    assert set(errors_of({"dial": {**DIAL, "account": account}, "actions": ["hangup"]})) == {
        "with.dial.account.username_secret"
    }


def test_the_kind_is_registered_runs_no_process_and_is_not_idempotent() -> None:
    kind = STEP_KINDS["call"]
    assert isinstance(kind, CallStep)
    assert kind.runs_processes is False
    script = kind.parse({"dial": DIAL, "actions": ["hangup"]}, "with")
    assert isinstance(script, CallScript)
    assert kind.idempotent(script) is False


def test_a_call_step_s_expect_checks_its_result() -> None:
    step = {
        "key": "call",
        "kind": "call",
        "with": {"dial": DIAL, "actions": ["hangup"]},
        "expect": {"latency_ms_below": 2000, "json": {"$.call.hung_up_by": "FAR_END"}},
    }
    parsed = parse_definition({"name": "x", "steps": [step]}, STEP_KINDS)
    assert parsed.steps[0].expect.latency_ms_below == 2000
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition({"name": "x", "steps": [{**step, "expect": {"status": 200}}]}, STEP_KINDS)
    assert [e.path for e in caught.value.errors] == ["steps[0].expect.status"]


@pytest.mark.parametrize("name", ["ivr-bank", "ivr-broken-bank"])
def test_the_example_ivr_scenarios_parse(name: str) -> None:
    text = (Path(__file__).resolve().parents[2] / "examples" / f"{name}.yaml").read_text()
    definition = parse_definition(text, STEP_KINDS)
    assert {step.kind for step in definition.steps} == {"call"}
