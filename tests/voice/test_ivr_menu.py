"""IVR menus: the shipped ones load, and every mistake is reported by its path, all at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from runwire.errors import InvalidDefinition
from runwire.voice.ivr.menu import Fallback, Hold, Reject, find_menu, load_menu, parse_menu


def minimal(**extra: Any) -> dict[str, Any]:
    return {
        "name": "tiny",
        "start": "hello",
        "nodes": {
            "hello": {"say": "Press 1.", "menu": {"dtmf": {1: "bye"}}},
            "bye": {"say": "Bye.", "hangup": True},
        },
        **extra,
    }


def errors_of(data: Any) -> dict[str, str]:
    with pytest.raises(InvalidDefinition) as caught:
        parse_menu(data)
    return {error.path: error.message for error in caught.value.errors}


def test_the_shipped_menus_load_and_differ_in_one_branch() -> None:
    bank = load_menu(find_menu("bank"))
    broken = load_menu(find_menu("broken-bank"))
    assert bank.start == "welcome"
    assert bank.extension == "bank"
    welcome = bank.nodes["welcome"]
    assert welcome.menu is not None
    assert welcome.menu.dtmf["2"] == "cards"
    assert welcome.menu.keywords["agent"] == "agent"
    assert welcome.no_input == Fallback(2, "Sorry, I did not hear you.", "goodbye")
    agent = bank.nodes["agent"].transfer
    assert agent is not None
    assert agent.queue == "agents"
    assert agent.hold is Hold.MUSIC
    broken_welcome = broken.nodes["welcome"].menu
    assert broken_welcome is not None
    assert broken_welcome.dtmf["2"] == "balances"


def test_a_minimal_menu_takes_the_defaults() -> None:
    menu = parse_menu(minimal())
    hello = menu.nodes["hello"]
    assert hello.menu is not None
    assert hello.menu.dtmf == {"1": "bye"}
    assert hello.menu.no_input_ms == 4000
    assert hello.no_input == Fallback()
    assert menu.reject is None
    assert menu.refusal(None) is None
    assert menu.refusal("x") is None
    assert menu.prompts() == {"Press 1.", "Bye."}


def test_refusals_404_for_another_extension_and_the_menus_status() -> None:
    menu = parse_menu(minimal(extension="sales"))
    assert menu.refusal("sales") is None
    assert menu.refusal(None) is None
    assert menu.refusal("support") == Reject(404, "Not Found")
    assert parse_menu(minimal(busy=True)).refusal(None) == Reject(486, "Busy Here")
    assert parse_menu(minimal(reject={"status": 503})).refusal(None) == Reject(
        503, "Service Unavailable"
    )
    assert errors_of(minimal(busy=True, reject={"status": 486})) == {
        "busy": "give busy or reject, not both"
    }
    assert errors_of(minimal(reject={"status": 200})) == {
        "reject.status": "expected a SIP final status from 300 to 699"
    }


def test_every_error_names_its_path() -> None:
    data = {
        "name": "broken",
        "start": "nowhere",
        "colour": "blue",
        "nodes": {
            "hello": {
                "say": "Hi.",
                "menu": {"dtmf": {"1": "missing", "x": "bye"}, "keywords": {"agent": 3}},
                "no_input": {"retries": -1, "goto": "gone"},
                "invalid": "lost",
            },
            "hold": {"say": "Hold.", "transfer": {"hold": "jazz", "goto": "void"}},
            "both": {"say": "Bye.", "hangup": True, "goto": "hello"},
            "silent": {"hangup": True},
            "plain": {"say": "Hi.", "goto": "hello", "no_input": "hello"},
            "bye": {"say": "Bye.", "hangup": True},
        },
    }
    errors = errors_of(data)
    assert errors == {
        "colour": errors["colour"],
        "start": "unknown node 'nowhere'",
        "nodes.hello.menu.dtmf.1": "unknown node 'missing'",
        "nodes.hello.menu.dtmf.x": "expected digits from 0-9 * # A-D",
        "nodes.hello.menu.keywords.agent": "expected a node id",
        "nodes.hello.no_input.retries": "expected a whole number from 0 to 10",
        "nodes.hello.no_input.goto": "unknown node 'gone'",
        "nodes.hello.invalid": "unknown node 'lost'",
        "nodes.hold.transfer.hold": "expected one of: music, ringback, silence",
        "nodes.hold.transfer.goto": "unknown node 'void'",
        "nodes.both": "needs exactly one of menu, transfer, goto or hangup (has goto, hangup)",
        "nodes.silent.say": "required",
        "nodes.plain.no_input": "only a node with a menu waits for input",
    }
    assert errors["colour"].startswith("unknown field; expected one of: ")


def test_a_file_that_is_not_a_menu_says_so(tmp_path: Path) -> None:
    path = tmp_path / "menu.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(InvalidDefinition, match="is not YAML"):
        load_menu(path)
    path.write_text(yaml.safe_dump(minimal(nodes={})))
    with pytest.raises(InvalidDefinition, match=r"^nodes: expected a mapping .* \(in "):
        load_menu(path)
    with pytest.raises(FileNotFoundError, match="shipped menus: bank, broken-bank"):
        find_menu("nope")


def test_dtmf_choices_of_one_length_only() -> None:
    data = minimal()
    data["nodes"]["hello"]["menu"] = {"dtmf": {"1": "bye", "12": "bye"}}
    assert errors_of(data) == {
        "nodes.hello.menu.dtmf": "every choice needs the same number of digits"
    }
    data["nodes"]["hello"]["menu"] = {}
    assert errors_of(data) == {"nodes.hello.menu": "needs at least one dtmf or keywords choice"}


def test_a_transfer_may_refer_to_a_sip_uri_and_nothing_follows_it() -> None:
    data = minimal()
    data["nodes"]["hello"] = {"say": "Hold.", "transfer": {"refer": "sip:agents@example.com"}}
    transfer = parse_menu(data).nodes["hello"].transfer
    assert transfer is not None
    assert transfer.refer == "sip:agents@example.com"
    data["nodes"]["hello"]["transfer"] = {"refer": "agents", "goto": "bye", "connected": "Hi."}
    assert errors_of(data) == {
        "nodes.hello.transfer.refer": "expected a SIP URI such as sip:agents@example.com",
        "nodes.hello.transfer.goto": "a refer hands the caller over: nothing follows it",
        "nodes.hello.transfer.connected": "a refer hands the caller over: nothing follows it",
    }
