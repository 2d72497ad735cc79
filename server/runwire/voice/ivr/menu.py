"""An IVR menu: a tree of prompts and branches read from YAML, checked field by field.

Every error names its path (`nodes.welcome.menu.dtmf.1: unknown node "balnces"`), all errors are
collected before one `InvalidDefinition` is raised, and every branch target is checked to exist,
so a menu that loads is a menu the simulator can run to the end.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from runwire.errors import FieldError, InvalidDefinition
from runwire.voice.media import DIGITS
from runwire.voice.sip.message import MalformedMessage, SipUri

MENUS_DIR = Path(__file__).parent / "menus"
"""Where the shipped menus (`bank`, `broken-bank`) live."""

REASONS = {
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    480: "Temporarily Unavailable",
    486: "Busy Here",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    503: "Service Unavailable",
    600: "Busy Everywhere",
    603: "Decline",
}
"""The standard reason phrase of the final statuses a menu is likely to reject with."""

_KEYWORD = re.compile(r"[a-z][a-z']*( [a-z][a-z']*)*")


class Hold(StrEnum):
    """What a caller hears while a transfer holds: a soft tune, a ringback tone, or nothing."""

    MUSIC = "music"
    RINGBACK = "ringback"
    SILENCE = "silence"


@dataclass(frozen=True, slots=True)
class Fallback:
    """What happens on no input (or an unknown digit or keyword).

    The prompt is repeated `retries` times (after `reprompt`, when given); then the call goes
    to `goto`, or hangs up when there is none.
    """

    retries: int = 0
    reprompt: str | None = None
    goto: str | None = None


@dataclass(frozen=True, slots=True)
class Choices:
    """A node's branches: digits pressed and keywords spoken, each to a node id."""

    dtmf: Mapping[str, str]
    keywords: Mapping[str, str]
    no_input_ms: int
    """How long to wait for the caller to start pressing or speaking after the prompt."""

    @property
    def digits(self) -> int:
        """How many digits make one choice (every `dtmf` key has the same length)."""
        return len(next(iter(self.dtmf), ""))


@dataclass(frozen=True, slots=True)
class Transfer:
    """Put the caller on hold in `queue`, then say `connected` and hang up or go to `goto`;
    or, with `refer`, hand the caller to that SIP URI (a blind transfer) and hang up."""

    queue: str
    hold_ms: int
    hold: Hold
    connected: str | None
    goto: str | None
    refer: str | None = None


@dataclass(frozen=True, slots=True)
class Node:
    """One prompt (`say`, spoken by TTS) and what follows it: exactly one of `menu`,
    `transfer`, `goto` or `hangup`."""

    id: str
    say: str
    menu: Choices | None = None
    no_input: Fallback = Fallback()
    invalid: Fallback = Fallback()
    transfer: Transfer | None = None
    goto: str | None = None
    hangup: bool = False


@dataclass(frozen=True, slots=True)
class Reject:
    """The final status every call to the menu gets instead of an answer (for failure tests)."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Menu:
    name: str
    start: str
    nodes: Mapping[str, Node]
    extension: str | None = None
    """The SIP user part (and `EXTENSION@MENU` for `simulated`) it answers; others get 404."""
    answer_after_ms: int = 0
    """How long the call rings (180 Ringing) before it is answered."""
    voice: str | None = None
    """The TTS voice of the prompts (the engine's default when None)."""
    reject: Reject | None = None
    end_silence_ms: int = 600
    """How much silence after speech ends a spoken answer."""
    max_input_ms: int = 8000
    """The longest spoken answer heard before it is cut off and recognized."""
    words_per_minute: int = 170
    """How fast the prompts are spoken."""
    min_confidence: float = 0.0
    """A keyword recognized with less confidence than this counts as an invalid answer."""
    source: str = field(default="", compare=False)
    """Where the menu was read from, for messages."""

    def refusal(self, extension: str | None) -> Reject | None:
        """The final status a call to `extension` gets instead of an answer, if any: 404 for
        another extension than the menu's (None dials the menu itself), else the menu's reject."""
        if extension is not None and self.extension is not None and extension != self.extension:
            return Reject(404, REASONS[404])
        return self.reject

    def prompts(self) -> frozenset[str]:
        """Every text the menu can speak, to synthesize ahead of the first call."""
        texts = set()
        for node in self.nodes.values():
            texts.add(node.say)
            for fallback in (node.no_input, node.invalid):
                if fallback.reprompt:
                    texts.add(fallback.reprompt)
            if node.transfer is not None and node.transfer.connected:
                texts.add(node.transfer.connected)
        return frozenset(texts)


def load_menu(path: str | Path) -> Menu:
    """Read and check a menu file; raises InvalidDefinition (also for unreadable YAML)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidDefinition([FieldError("", f"cannot read {path}: {exc}")]) from exc
    except yaml.YAMLError as exc:
        raise InvalidDefinition([FieldError("", f"{path} is not YAML: {exc}")]) from exc
    return parse_menu(data, source=str(path))


def find_menu(name_or_path: str) -> Path:
    """A menu file: an existing path, or the name of a shipped menu (`bank`, `broken-bank`).

    Raises FileNotFoundError naming the shipped menus when neither matches.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    if re.fullmatch(r"[A-Za-z0-9_-]+", name_or_path):
        shipped = MENUS_DIR / f"{name_or_path}.yaml"
        if shipped.is_file():
            return shipped
    names = ", ".join(shipped_menus())
    raise FileNotFoundError(f"no menu file {name_or_path!r} (shipped menus: {names})")


def shipped_menus() -> list[str]:
    return sorted(path.stem for path in MENUS_DIR.glob("*.yaml"))


def parse_menu(data: Any, source: str = "") -> Menu:
    """A checked Menu from parsed YAML; raises InvalidDefinition listing every error by path."""
    errors: list[FieldError] = []
    top = _Fields(
        data,
        "",
        {
            "name",
            "extension",
            "answer_after_ms",
            "voice",
            "start",
            "nodes",
            "busy",
            "reject",
            "end_silence_ms",
            "max_input_ms",
            "no_input_ms",
            "words_per_minute",
            "min_confidence",
        },
        errors,
    )
    top.require("name", "start", "nodes")
    name = top.string("name") or ""
    start = top.string("start") or ""
    extension = top.string("extension")
    if extension is not None and not re.fullmatch(r"[A-Za-z0-9_.!~*'()&=+$,;?/-]+", extension):
        top.error("extension", "expected a SIP user part (letters, digits, - _ . and the like)")
    no_input_ms = top.milliseconds("no_input_ms", 4000)
    reject = _reject(top)
    nodes: dict[str, Node] = {}
    raw_nodes = top.values.get("nodes")
    if "nodes" in top.values and not (isinstance(raw_nodes, Mapping) and raw_nodes):
        top.error("nodes", "expected a mapping of node ids to nodes")
    elif isinstance(raw_nodes, Mapping):
        for node_id, raw in raw_nodes.items():
            if not isinstance(node_id, str) or not node_id:
                top.error(f"nodes.{node_id}", "a node id must be a non-empty string")
                continue
            node = _node(
                _Fields(raw, f"nodes.{node_id}", _NODE_FIELDS, errors, top.refs),
                node_id,
                no_input_ms,
            )
            if node is not None:
                nodes[node_id] = node
        if start:
            top.ref("start", start)
        for path, target in top.refs:
            if target not in raw_nodes:
                errors.append(FieldError(path, f"unknown node {target!r}"))
    menu = Menu(
        name=name,
        start=start,
        nodes=nodes,
        extension=extension,
        answer_after_ms=top.milliseconds("answer_after_ms", 0),
        voice=top.string("voice"),
        reject=reject,
        end_silence_ms=top.milliseconds("end_silence_ms", 600, positive=True),
        max_input_ms=top.milliseconds("max_input_ms", 8000, positive=True),
        words_per_minute=_words_per_minute(top),
        min_confidence=_min_confidence(top),
        source=source,
    )
    if errors:
        raise InvalidDefinition(
            errors,
            "; ".join(str(error) for error in errors) + (f" (in {source})" if source else ""),
        )
    return menu


def _words_per_minute(top: _Fields) -> int:
    value = top.values.get("words_per_minute", 170)
    if isinstance(value, bool) or not isinstance(value, int) or not 80 <= value <= 450:
        top.error("words_per_minute", "expected a whole number from 80 to 450")
        return 170
    return value


def _min_confidence(top: _Fields) -> float:
    value = top.values.get("min_confidence", 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        top.error("min_confidence", "expected a number from 0 to 1")
        return 0.0
    return float(value)


def _reject(top: _Fields) -> Reject | None:
    busy = top.boolean("busy", False)
    if not top.has("reject"):
        return Reject(486, REASONS[486]) if busy else None
    if busy:
        top.error("busy", "give busy or reject, not both")
    fields = top.sub("reject", {"status", "reason"})
    fields.require("status")
    status = fields.values.get("status")
    if "status" in fields.values and not (
        isinstance(status, int) and not isinstance(status, bool) and 300 <= status <= 699
    ):
        fields.error("status", "expected a SIP final status from 300 to 699")
        return None
    if not isinstance(status, int):
        return None
    return Reject(status, fields.string("reason") or REASONS.get(status, "Rejected"))


_NODE_FIELDS = {"say", "menu", "no_input", "invalid", "transfer", "goto", "hangup"}


def _node(fields: _Fields, node_id: str, default_no_input_ms: int) -> Node | None:
    if not fields.is_mapping:
        return None
    fields.require("say")
    say = fields.string("say") or ""
    if "say" in fields.values and isinstance(fields.values["say"], str) and not say.strip():
        fields.error("say", "must not be empty")
    kinds = [kind for kind in ("menu", "transfer", "goto", "hangup") if fields.has(kind)]
    if len(kinds) != 1:
        fields.error(
            "",
            "needs exactly one of menu, transfer, goto or hangup"
            + (f" (has {', '.join(kinds)})" if kinds else ""),
        )
    hangup = fields.boolean("hangup", False)
    if fields.has("hangup") and hangup is False:
        fields.error("hangup", "only `hangup: true` is meaningful; leave it out otherwise")
    menu = _choices(fields, default_no_input_ms) if fields.has("menu") else None
    for name in ("no_input", "invalid"):
        if fields.has(name) and not fields.has("menu"):
            fields.error(name, "only a node with a menu waits for input")
    return Node(
        id=node_id,
        say=say,
        menu=menu,
        no_input=_fallback(fields, "no_input"),
        invalid=_fallback(fields, "invalid"),
        transfer=_transfer(fields) if fields.has("transfer") else None,
        goto=fields.ref("goto", fields.values.get("goto")),
        hangup=bool(hangup),
    )


def _choices(node: _Fields, default_no_input_ms: int) -> Choices:
    fields = node.sub("menu", {"dtmf", "keywords", "no_input_ms"})
    dtmf: dict[str, str] = {}
    raw_dtmf = fields.values.get("dtmf", {})
    if not isinstance(raw_dtmf, Mapping):
        fields.error("dtmf", "expected a mapping of digits to node ids")
    else:
        for key, target in raw_dtmf.items():
            # YAML reads an unquoted 1 as an int; a digit key means the digit either way.
            digits = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
            if not isinstance(digits, str) or not digits or set(digits) - DIGITS:
                fields.error(f"dtmf.{key}", "expected digits from 0-9 * # A-D")
            elif (node_id := fields.ref(f"dtmf.{key}", target)) is not None:
                dtmf[digits.upper()] = node_id
        if len({len(digits) for digits in dtmf}) > 1:
            fields.error("dtmf", "every choice needs the same number of digits")
    keywords: dict[str, str] = {}
    raw_keywords = fields.values.get("keywords", {})
    if not isinstance(raw_keywords, Mapping):
        fields.error("keywords", "expected a mapping of spoken keywords to node ids")
    else:
        for key, target in raw_keywords.items():
            phrase = " ".join(str(key).lower().split())
            if not isinstance(key, str) or not _KEYWORD.fullmatch(phrase):
                fields.error(f"keywords.{key}", "expected words of letters (a keyword to say)")
            elif (node_id := fields.ref(f"keywords.{key}", target)) is not None:
                keywords[phrase] = node_id
    if fields.is_mapping and not dtmf and not keywords and not fields.errors_under(""):
        fields.error("", "needs at least one dtmf or keywords choice")
    return Choices(
        dtmf=dtmf,
        keywords=keywords,
        no_input_ms=fields.milliseconds("no_input_ms", default_no_input_ms, positive=True),
    )


def _fallback(node: _Fields, name: str) -> Fallback:
    raw = node.values.get(name)
    if raw is None:
        return Fallback()
    if isinstance(raw, str):
        return Fallback(goto=node.ref(name, raw))
    fields = node.sub(name, {"retries", "reprompt", "goto"})
    retries = fields.values.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        fields.error("retries", "expected a whole number from 0 to 10")
        retries = 0
    return Fallback(
        retries=retries,
        reprompt=fields.string("reprompt"),
        goto=fields.ref("goto", fields.values.get("goto")),
    )


def _transfer(node: _Fields) -> Transfer:
    fields = node.sub("transfer", {"queue", "hold_ms", "hold", "connected", "goto", "refer"})
    hold = fields.string("hold") or Hold.MUSIC.value
    if hold not in set(Hold):
        fields.error("hold", f"expected one of: {', '.join(Hold)}")
        hold = Hold.MUSIC.value
    refer = fields.string("refer")
    if refer is not None:
        try:
            SipUri.parse(refer)
        except MalformedMessage:
            fields.error("refer", "expected a SIP URI such as sip:agents@example.com")
            refer = None
        for name in ("connected", "goto"):
            if fields.has(name):
                fields.error(name, "a refer hands the caller over: nothing follows it")
    return Transfer(
        queue=fields.string("queue") or "agents",
        hold_ms=fields.milliseconds("hold_ms", 2000),
        hold=Hold(hold),
        connected=fields.string("connected"),
        goto=fields.ref("goto", fields.values.get("goto")),
        refer=refer,
    )


class _Fields:
    """One mapping being checked; each getter records errors instead of raising."""

    def __init__(
        self,
        raw: Any,
        path: str,
        allowed: set[str],
        errors: list[FieldError],
        refs: list[tuple[str, str]] | None = None,
    ) -> None:
        self.path = path
        self.errors = errors
        self.refs: list[tuple[str, str]] = [] if refs is None else refs
        self.values: Mapping[Any, Any] = {}
        self.is_mapping = isinstance(raw, Mapping)
        if not isinstance(raw, Mapping):
            errors.append(FieldError(path, "expected a mapping"))
            return
        self.values = raw
        names = ", ".join(sorted(allowed))
        for key in raw:
            if key not in allowed:
                self.error(str(key), f"unknown field; expected one of: {names}")

    def sub(self, name: str, allowed: set[str]) -> _Fields:
        """The mapping at `name`, checked into the same errors and references."""
        return _Fields(self.values.get(name), self.child(name), allowed, self.errors, self.refs)

    def ref(self, name: str, target: Any) -> str | None:
        """A node id at `name`, checked against the nodes once all are read."""
        if target is None:
            return None
        if not isinstance(target, str):
            self.error(name, "expected a node id")
            return None
        self.refs.append((self.child(name) if name else self.path, target))
        return target

    def child(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> None:
        self.errors.append(FieldError(self.child(name) if name else self.path, message))

    def errors_under(self, name: str) -> bool:
        prefix = self.child(name) if name else self.path
        return any(error.path.startswith(prefix) for error in self.errors)

    def has(self, name: str) -> bool:
        return name in self.values

    def require(self, *names: str) -> None:
        for name in names:
            if name not in self.values:
                self.error(name, "required")

    def string(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is None or isinstance(value, str):
            return value
        self.error(name, "expected a string")
        return None

    def boolean(self, name: str, default: bool) -> bool | None:
        value = self.values.get(name, default)
        if isinstance(value, bool):
            return value
        self.error(name, "expected true or false")
        return None

    def milliseconds(self, name: str, default: int, *, positive: bool = False) -> int:
        value = self.values.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.error(name, "expected a whole number of milliseconds")
            return default
        if positive and value == 0:
            self.error(name, "must be more than 0")
            return default
        return value
