"""The `call` step's `with`: where to dial, and the script of actions to run on the call.

```yaml
with:
  dial: {target: bank, driver: simulated}          # sip: target "sip:100@pbx.example:5060"
  timeout: 60                                       # the whole call, seconds
  intents: {balance: ["balance", "check my balance"]}
  actions:
    - listen: {timeout: 5, silence_ms: 700}          # the prompt's transcript and confidence
    - expect: {transcript_contains: "welcome"}       # or matches, wer_below, intent_is, …
    - expect: {transferred_to: "sip:agents@example.com"}  # waits for the call to end
    - press: "1"                                     # or {digits: "12#", method: inband}
    - say: "check my balance"
    - wait: 0.5
    - hangup: true
```

Every string may be a `{{ template }}`: the runner renders `with` before each attempt and parses
it again, so a template is only let through unchecked while the definition is checked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runwire.errors import FieldError, InvalidDefinition
from runwire.runner.steps.params import Fields, finite_number, is_template
from runwire.scenarios.definition import SECRET_NAME, SECRET_NAME_RULE

DRIVERS = ("sip", "simulated")
CODECS = ("PCMU", "PCMA")
DIGIT_METHODS = ("rfc4733", "inband")
DIGITS = frozenset("0123456789*#ABCD")  # as runwire.voice.media.DIGITS (RFC 4733 events 0-15)
ACTIONS = ("listen", "expect", "press", "say", "wait", "hangup")
EXPECTATIONS = (
    "transcript_contains",
    "matches",
    "wer_below",
    "intent_is",
    "latency_below_ms",
    "confidence_above",
    "transferred_to",
)
LISTEN_START_TIMEOUT = 5.0
"""Seconds a `listen` waits for the far end to start speaking before it reports NO_INPUT."""
Number = float | str
"""A number, or a template string that renders to one."""


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """Digest credentials by secret name; the values come from the step's secrets at run time."""

    username_secret: str
    password_secret: str
    domain: str | None = None
    register: bool = False


@dataclass(frozen=True, slots=True)
class DialSpec:
    target: str
    caller_id: str | None = None
    driver: str | None = None
    """None: the server's RUNWIRE_CALL_DRIVER."""
    account: AccountSpec | None = None
    codec: str = "PCMU"
    answer_timeout: Number = 30.0


@dataclass(frozen=True, slots=True)
class Listen:
    timeout: Number = LISTEN_START_TIMEOUT
    silence_ms: Number = 700.0
    max_seconds: Number = 30.0
    phrases: tuple[str, ...] = ()
    """Phrases to listen for besides those of the expects that follow."""


@dataclass(frozen=True, slots=True)
class WerBelow:
    text: str
    max: Number


@dataclass(frozen=True, slots=True)
class Expect:
    """What the last prompt heard must show; every field set must hold.

    `transferred_to` is about the call, not a prompt: it waits for the call to end and holds
    when the far end transferred it (a REFER) to exactly that URI.
    """

    transcript_contains: str | None = None
    matches: str | None = None
    wer_below: WerBelow | None = None
    intent_is: str | None = None
    latency_below_ms: Number | None = None
    confidence_above: Number | None = None
    transferred_to: str | None = None

    @property
    def about_prompt(self) -> bool:
        """Whether it checks the last prompt heard (anything but `transferred_to`)."""
        return any(
            value is not None
            for value in (
                self.transcript_contains,
                self.matches,
                self.wer_below,
                self.intent_is,
                self.latency_below_ms,
                self.confidence_above,
            )
        )

    def phrases(self, intents: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
        """What recognition may be constrained to for the prompt this checks (may be empty)."""
        found: list[str] = []
        if self.transcript_contains is not None:
            found.append(self.transcript_contains)
        if self.wer_below is not None:
            found.append(self.wer_below.text)
        if self.intent_is is not None:
            # All intents' phrases: which one was heard is the question, not only whether this.
            for phrases in intents.values():
                found.extend(phrases)
        return tuple(found)


@dataclass(frozen=True, slots=True)
class Press:
    digits: str
    method: str = "rfc4733"


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class Wait:
    seconds: Number


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


Step = Listen | Expect | Press | Say | Wait | Hangup


@dataclass(frozen=True, slots=True)
class Action:
    """One action of the script; `timeout` bounds it (None: only the whole call's timeout)."""

    step: Step
    timeout: Number | None = None

    @property
    def name(self) -> str:
        return type(self.step).__name__.lower()


@dataclass(frozen=True, slots=True)
class CallScript:
    dial: DialSpec
    actions: tuple[Action, ...]
    timeout: Number = 120.0
    intents: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def phrases_for(self, index: int) -> tuple[str, ...]:
        """What the listen at `index` is recognized against: its own phrases and those of the
        expects that follow it (until the next listen or input; every intent's for an
        `intent_is`); empty (free-form recognition) when there are none.

        Only these: each phrase more in the grammar lowers the recognizer's accuracy on the
        others (measured on the bank menu's prompts)."""
        listen = self.actions[index].step
        found: list[str] = list(listen.phrases) if isinstance(listen, Listen) else []
        for action in self.actions[index + 1 :]:
            if isinstance(action.step, Listen | Press | Say):
                break
            if isinstance(action.step, Expect):
                found.extend(action.step.phrases(self.intents))
        if any(is_template(phrase) for phrase in found):
            return ()
        return tuple(dict.fromkeys(found))

    def all_intent_phrases(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p for phrases in self.intents.values() for p in phrases))


_WITH = ("dial", "timeout", "actions", "intents")
_DIAL = ("target", "caller_id", "driver", "account", "codec", "answer_timeout")
_ACCOUNT = ("username_secret", "password_secret", "domain", "register")
_LISTEN = ("timeout", "silence_ms", "max_seconds", "phrases")
_PRESS = ("digits", "method")
_WER = ("text", "max")


def parse_script(params: Any, path: str) -> CallScript:
    """The script, or InvalidDefinition naming the path of every error found."""
    fields = Fields(params, path, _WITH)
    fields.require("dial", "actions")
    dial = _dial(fields.values.get("dial"), f"{path}.dial", fields.errors)
    timeout = fields.number("timeout", 120.0, positive=True)
    intents = _intents(fields, fields.values.get("intents", {}))
    actions: list[Action] = []
    raw_actions = fields.values.get("actions")
    if raw_actions is not None and not isinstance(raw_actions, list):
        fields.error("actions", "expected a list of actions")
    elif isinstance(raw_actions, list):
        if not raw_actions:
            fields.error("actions", "must not be empty")
        for i, raw in enumerate(raw_actions):
            action = _action(raw, f"{path}.actions[{i}]", intents, fields.errors)
            if action is not None:
                actions.append(action)
    fields.check()
    assert dial is not None  # no errors: it parsed
    return CallScript(dial, tuple(actions), timeout, intents)


def _dial(raw: Any, path: str, errors: list[FieldError]) -> DialSpec | None:
    if raw is None:
        return None
    fields = Fields(raw, path, _DIAL, errors)
    fields.require("target")
    target = fields.string("target")
    if target is not None and not target.strip():
        fields.error("target", "must not be empty")
    caller_id = fields.string("caller_id")
    driver = fields.string("driver")
    if driver is not None and not is_template(driver) and driver not in DRIVERS:
        fields.error("driver", f"expected one of: {', '.join(DRIVERS)}")
    codec = fields.string("codec") or "PCMU"
    if not is_template(codec) and codec.upper() not in CODECS:
        fields.error("codec", f"expected one of: {', '.join(CODECS)}")
    answer_timeout = fields.number("answer_timeout", 30.0, positive=True)
    account = None
    if fields.has("account"):
        account = _account(fields.values["account"], f"{path}.account", errors)
    if not isinstance(raw, Mapping):
        return None
    return DialSpec(
        target or "",
        caller_id,
        driver,
        account,
        codec if is_template(codec) else codec.upper(),
        answer_timeout,
    )


def _account(raw: Any, path: str, errors: list[FieldError]) -> AccountSpec | None:
    fields = Fields(raw, path, _ACCOUNT, errors)
    fields.require("username_secret", "password_secret")
    names: dict[str, str] = {}
    for name in ("username_secret", "password_secret"):
        value = fields.string(name)
        # A literal name, never a template or a value: credentials come only from secrets.
        if value is not None and not SECRET_NAME.fullmatch(value):
            fields.error(name, f"a secret name is {SECRET_NAME_RULE}")
        elif value is not None:
            names[name] = value
    domain = fields.string("domain")
    register = fields.boolean("register", False)
    if len(names) < 2:
        return None
    return AccountSpec(names["username_secret"], names["password_secret"], domain, bool(register))


def _intents(fields: Fields, raw: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, Mapping):
        fields.error("intents", "expected a mapping of intent names to lists of phrases")
        return {}
    intents: dict[str, tuple[str, ...]] = {}
    for name, phrases in raw.items():
        if isinstance(phrases, str):
            phrases = [phrases]
        if (
            not isinstance(phrases, list)
            or not phrases
            or not all(isinstance(p, str) and p.strip() for p in phrases)
        ):
            fields.error(f"intents.{name}", "expected a non-empty list of phrases")
            continue
        intents[str(name)] = tuple(phrases)
    return intents


def _action(
    raw: Any, path: str, intents: Mapping[str, tuple[str, ...]], errors: list[FieldError]
) -> Action | None:
    expected = ", ".join(ACTIONS)
    if isinstance(raw, str) and raw == "hangup":
        return Action(Hangup())
    if not isinstance(raw, Mapping):
        errors.append(FieldError(path, f"expected a mapping with one action: {expected}"))
        return None
    names = [key for key in raw if key != "timeout"]
    for key in names:
        if key not in ACTIONS:
            errors.append(
                FieldError(f"{path}.{key}", f"unknown action; expected one of: {expected}")
            )
    known = [key for key in names if key in ACTIONS]
    if len(known) > 1:
        errors.append(FieldError(path, f"one action per item, found: {', '.join(known)}"))
    if not names:
        errors.append(FieldError(path, f"expected one action: {expected}"))
    timeout: Number | None = None
    if "timeout" in raw:
        timeout = _number(raw["timeout"], f"{path}.timeout", errors, positive=True)
    if len(known) != 1 or len(names) != 1:
        return None
    name = known[0]
    value = raw[name]
    where = f"{path}.{name}"
    before = len(errors)
    step: Step | None
    match name:
        case "listen":
            step = _listen(value, where, errors)
        case "expect":
            step = _expect(value, where, intents, errors)
        case "press":
            step = _press(value, where, errors)
        case "say":
            if not isinstance(value, str) or not value.strip():
                errors.append(FieldError(where, "expected the text to speak"))
            step = Say(str(value))
        case "wait":
            seconds = _number(value, where, errors, positive=False)
            step = Wait(seconds if seconds is not None else 0.0)
        case _:  # hangup
            if value is not True:
                errors.append(FieldError(where, "expected true"))
            step = Hangup()
    if len(errors) > before or step is None:
        return None
    return Action(step, timeout)


def _listen(raw: Any, path: str, errors: list[FieldError]) -> Listen | None:
    if raw is None or raw is True:
        return Listen()
    fields = Fields(raw, path, _LISTEN, errors)
    timeout = fields.number("timeout", LISTEN_START_TIMEOUT, positive=True)
    silence_ms = fields.number("silence_ms", 700.0, positive=True)
    max_seconds = fields.number("max_seconds", 30.0, positive=True)
    phrases = fields.strings("phrases")
    if any(not phrase.strip() for phrase in phrases):
        fields.error("phrases", "must not hold an empty phrase")
    return Listen(timeout, silence_ms, max_seconds, phrases)


def _expect(
    raw: Any, path: str, intents: Mapping[str, tuple[str, ...]], errors: list[FieldError]
) -> Expect | None:
    fields = Fields(raw, path, EXPECTATIONS, errors)
    if isinstance(raw, Mapping) and not raw:
        errors.append(FieldError(path, f"expected at least one of: {', '.join(EXPECTATIONS)}"))
    contains = fields.string("transcript_contains")
    if contains is not None and not contains.strip():
        fields.error("transcript_contains", "must not be empty")
    matches = fields.string("matches")
    if matches is not None and not is_template(matches):
        try:
            re.compile(matches)
        except re.error as error:
            fields.error("matches", f"not a valid regular expression: {error}")
    wer = None
    if fields.has("wer_below"):
        wer_fields = Fields(fields.values["wer_below"], f"{path}.wer_below", _WER, errors)
        wer_fields.require("text", "max")
        text = wer_fields.string("text")
        top = wer_fields.number("max", 0.0)
        if isinstance(top, float) and top > 1:
            wer_fields.error("max", "a word error rate: a fraction from 0 to 1")
        if text is not None:
            wer = WerBelow(text, top)
    intent = fields.string("intent_is")
    if intent is not None and not is_template(intent) and intent not in intents:
        known = ", ".join(intents) or "none (declare them in with.intents)"
        fields.error("intent_is", f"unknown intent {intent}; declared: {known}")
    latency = confidence = None
    if fields.has("latency_below_ms"):
        latency = fields.number("latency_below_ms", 0.0, positive=True)
    if fields.has("confidence_above"):
        confidence = fields.number("confidence_above", 0.0)
        if isinstance(confidence, float) and confidence > 1:
            fields.error("confidence_above", "a confidence: a fraction from 0 to 1")
    transferred_to = fields.string("transferred_to")
    if transferred_to is not None and not transferred_to.strip():
        fields.error("transferred_to", "must not be empty")
    if not isinstance(raw, Mapping):
        return None
    return Expect(contains, matches, wer, intent, latency, confidence, transferred_to)


def _press(raw: Any, path: str, errors: list[FieldError]) -> Press | None:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)  # `press: 1` in YAML is a number
    if isinstance(raw, str):
        return Press(raw) if _digits_ok(raw, path, errors) else None
    fields = Fields(raw, path, _PRESS, errors)
    fields.require("digits")
    digits = fields.values.get("digits")
    if isinstance(digits, int) and not isinstance(digits, bool):
        digits = str(digits)
    if digits is not None and not isinstance(digits, str):
        fields.error("digits", "expected a string of digits")
        digits = None
    method = fields.string("method") or "rfc4733"
    if not is_template(method) and method not in DIGIT_METHODS:
        fields.error("method", f"expected one of: {', '.join(DIGIT_METHODS)}")
    if digits is None or not _digits_ok(digits, f"{path}.digits", errors):
        return None
    return Press(digits, method)


def _digits_ok(digits: str, path: str, errors: list[FieldError]) -> bool:
    if is_template(digits):
        return True
    if not digits:
        errors.append(FieldError(path, "expected at least one digit"))
        return False
    if bad := sorted(set(digits) - DIGITS):
        errors.append(
            FieldError(path, f"not DTMF digits: {''.join(bad)!r}; expected only 0-9, *, #, A-D")
        )
        return False
    return True


def _number(value: Any, path: str, errors: list[FieldError], *, positive: bool) -> Number | None:
    if is_template(value):
        return str(value)
    number = finite_number(value)
    if number is None:
        errors.append(FieldError(path, "expected a number or a {{ template }}"))
    elif positive and number <= 0:
        errors.append(FieldError(path, "must be more than 0"))
    elif number < 0:
        errors.append(FieldError(path, "must not be negative"))
    else:
        return number
    return None


def check(script: CallScript) -> None:
    """Raise InvalidDefinition if a template left anything unrendered (only at run time)."""
    leftovers: list[FieldError] = []

    def scan(value: Any, path: str) -> None:
        if is_template(value):
            leftovers.append(FieldError(path, "is an unrendered template"))

    scan(script.timeout, "with.timeout")
    scan(script.dial.target, "with.dial.target")
    scan(script.dial.driver, "with.dial.driver")
    scan(script.dial.answer_timeout, "with.dial.answer_timeout")
    for i, action in enumerate(script.actions):
        for item in ("timeout",):
            scan(getattr(action, item), f"with.actions[{i}].{item}")
        for name in getattr(action.step, "__slots__", ()):
            scan(getattr(action.step, name), f"with.actions[{i}].{action.name}.{name}")
    if leftovers:
        raise InvalidDefinition(leftovers)
