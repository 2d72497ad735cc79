"""Parse and validate scenario definitions (YAML or JSON) and bind inputs to their signature."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import yaml

from runwire.errors import FieldError, InvalidDefinition, InvalidInputs, NotFound
from runwire.scenarios.budgets import NO_BUDGET, Budget
from runwire.scenarios.expectations import NO_EXPECTATIONS, Expectations, parse_expect
from runwire.scenarios.limits import printable, storable, too_big, unstorable
from runwire.scenarios.templating import TemplateScope, check_names, check_syntax

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
# Step keys are stored in 100-character columns; input names are capped alike for symmetry.
INPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
STEP_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,99}")
# Secrets become environment variables of a step's process, so they are named like them.
SECRET_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
SECRET_NAME_RULE = "upper-case letters, digits and '_', not starting with a digit, 1..128"
_MAX_STEP_SECRETS = 50

_TOP_FIELDS = (
    "budget",
    "concurrency",
    "description",
    "inputs",
    "name",
    "parallelism",
    "steps",
    "timeout",
)
_INPUT_FIELDS = ("default", "description", "enum", "required", "type")
_STEP_FIELDS = (
    "budget",
    "continue_on_failure",
    "expect",
    "key",
    "kind",
    "needs",
    "on_failure",
    "on_runner_lost",
    "retries",
    "secrets",
    "timeout",
    "with",
)
_BUDGET_FIELDS = ("max_cost_usd", "max_tokens")
_MAX_BUDGET_USD = 1_000_000.0
_MAX_BUDGET_TOKENS = 10**12
_RETRY_FIELDS = ("backoff", "delay", "max", "max_delay")
_CONCURRENCY_FIELDS = ("key", "limit")
_MAX_RETRIES = 100
_MAX_PARALLELISM = 64
DEFAULT_PARALLELISM = 4
_MAX_VALUES = 100_000  # YAML aliases can expand a small text into billions of values
MAX_SECONDS = 10**9  # keeps timeouts finite floats (timers overflow); about 31 years


class InputType(StrEnum):
    """The JSON type an input's value must have."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    OBJECT = "object"
    ARRAY = "array"


_TYPE_NAMES = frozenset(InputType)


class ParamsParser(Protocol):
    """What the definition needs from a step kind: a check of its `with` mapping."""

    def parse(self, params: Any, path: str) -> Any:
        """Check `params`, raising InvalidDefinition naming `path.field`."""
        ...

    def idempotent(self, params: Any) -> bool:
        """Whether running it twice with these (parsed) params is as running it once."""
        ...


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One declared input; `default` is None when there is none."""

    name: str
    type: InputType
    required: bool
    default: Any
    description: str | None
    enum: tuple[Any, ...] | None


class OnFailure(StrEnum):
    """What a failed step (after its retries) does to the execution."""

    FAIL = "fail"
    PAUSE = "pause"  # wait for an operator to retry, skip or stop


class OnRunnerLost(StrEnum):
    """What becomes of a step whose runner was lost (crashed, cut off, shut down) mid-attempt."""

    RETRY = "retry"  # a new attempt, by whichever runner resumes the execution
    FAIL = "fail"  # the execution fails: running it again could do its work twice


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Automatic attempts after a failure: delay, delay*backoff, … capped at max_delay."""

    max: int
    delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 300.0

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before `attempt` (2, 3, …) of a step."""
        return float(min(self.delay * self.backoff ** max(0, attempt - 2), self.max_delay))


@dataclass(frozen=True, slots=True)
class ConcurrencyLimit:
    """At most `limit` executions whose rendered `key` is equal run at once."""

    key: str
    limit: int


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One step as written: `with_` is the unrendered `with` mapping.

    `needs` is always explicit here: a step written without `needs` depends on the step before it.
    """

    key: str
    kind: str
    with_: Mapping[str, Any]
    timeout: float | None
    position: int
    needs: tuple[str, ...] = ()
    retries: RetryPolicy | None = None
    continue_on_failure: bool = False
    on_failure: OnFailure = OnFailure.FAIL
    expect: Expectations = NO_EXPECTATIONS
    # Written, or the kind's default: retry where running the step twice is harmless.
    on_runner_lost: OnRunnerLost = OnRunnerLost.FAIL
    # Names of workspace secrets the step receives (see domain/secrets.py).
    secrets: tuple[str, ...] = ()
    # What the step's model calls and agent runs may spend, over all its attempts.
    budget: Budget = NO_BUDGET


@dataclass(frozen=True, slots=True)
class Definition:
    """A validated scenario definition; `source` is plain JSON data that parses back to it."""

    name: str
    description: str
    inputs: tuple[InputSpec, ...]
    steps: tuple[StepSpec, ...]
    timeout: float | None
    source: Mapping[str, Any]
    parallelism: int = DEFAULT_PARALLELISM
    concurrency: ConcurrencyLimit | None = None
    # What the whole execution's model calls and agent runs may spend.
    budget: Budget = NO_BUDGET

    def step(self, key: str) -> StepSpec:
        """The step called `key`."""
        for step in self.steps:
            if step.key == key:
                return step
        raise NotFound(f'no step "{key}" in scenario "{self.name}"')


def parse_definition(
    text_or_mapping: str | Mapping[str, Any],
    kinds: Mapping[str, ParamsParser],
    *,
    max_steps: int | None = None,
) -> Definition:
    """Parse and validate a definition, raising InvalidDefinition with every error found.

    `max_steps` bounds what a client sends; a stored definition was bounded when it was saved
    and parses whatever the limit is today.
    """
    errors: list[FieldError] = []
    loaded = _load(text_or_mapping) if isinstance(text_or_mapping, str) else text_or_mapping
    source = _json_data(loaded, errors)
    if not isinstance(source, dict):
        raise InvalidDefinition(
            [FieldError("", f"a definition must be a mapping, got {_type_name(loaded)}")]
        )
    _check_fields(source, "", _TOP_FIELDS, errors)

    name = source.get("name")
    if name is None:
        errors.append(FieldError("name", "required"))
    elif not isinstance(name, str) or not NAME.fullmatch(name):
        errors.append(
            FieldError(
                "name",
                "must be 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit",
            )
        )
    description = source.get("description")
    if description is not None and not isinstance(description, str):
        errors.append(_wrong_type("description", "a string", description))

    definition = Definition(
        name=name if isinstance(name, str) else "",
        description=description if isinstance(description, str) else "",
        inputs=parse_input_specs(source.get("inputs"), "inputs", "input", errors),
        steps=_parse_steps(source.get("steps"), kinds, max_steps, errors),
        timeout=_parse_timeout(source.get("timeout"), "timeout", errors),
        source=source,
        parallelism=_parse_count(
            source.get("parallelism"),
            "parallelism",
            1,
            _MAX_PARALLELISM,
            DEFAULT_PARALLELISM,
            errors,
        )
        or DEFAULT_PARALLELISM,
        concurrency=_parse_concurrency(source.get("concurrency"), errors),
        budget=_parse_budget(source.get("budget"), "budget", errors),
    )
    _check_template_names(definition, source.get("inputs"), errors)
    if errors:
        raise InvalidDefinition(errors)
    return definition


class DefinitionCache:
    """Definitions parsed and validated once per text: clients start one text over and over.

    Parsing YAML and validating were a large share of a start's server time (P5). The cached
    `Definition` (and its `source`) is shared by every start of the text, so nothing may mutate
    it. Texts that fail are not cached, and neither are long ones, so its memory stays bounded.
    `parse_text` touches no cache state, so it may run in a worker thread; `get` and `put`
    belong to the event loop.
    """

    def __init__(
        self,
        kinds: Mapping[str, ParamsParser],
        maxsize: int = 256,
        max_text: int = 65_536,
        max_steps: int | None = None,
    ) -> None:
        self._kinds = kinds
        self._maxsize = maxsize
        self._max_text = max_text
        self._max_steps = max_steps
        self._parsed: dict[Hashable, Definition] = {}

    def parse(self, text: str) -> Definition:
        """`parse_definition(text)`, from the cache when this text was parsed before."""
        found = self.get(text)
        if found is None:
            found = self.parse_text(text)
            self.put(text, found)
        return found

    def parse_text(self, text: str) -> Definition:
        """Parse a client's text afresh, within the step limit; the cache is not touched."""
        return parse_definition(text, self._kinds, max_steps=self._max_steps)

    def parse_version(self, key: Hashable, source: Mapping[str, Any]) -> Definition:
        """`parse_definition(source)` of an immutable stored version, cached under `key`."""
        found = self.get(key)
        if found is None:
            found = parse_definition(source, self._kinds)
            self.put(key, found)
        return found

    def parse_source(self, source: Mapping[str, Any]) -> Definition:
        """Validate a stored version afresh; the cache is not touched."""
        return parse_definition(source, self._kinds)

    def get(self, key: Hashable) -> Definition | None:
        """The cached parse of a text or stored version, if any (and mark it recently used)."""
        if isinstance(key, str) and len(key) > self._max_text:
            return None
        found = self._parsed.pop(key, None)
        if found is not None:
            self._parsed[key] = found
        return found

    def put(self, key: Hashable, definition: Definition) -> None:
        """Remember a successful parse; long texts are not kept."""
        if isinstance(key, str) and len(key) > self._max_text:
            return
        self._parsed.pop(key, None)
        if len(self._parsed) >= self._maxsize:
            # Least recently used first: dicts keep insertion order and hits re-insert.
            del self._parsed[next(iter(self._parsed))]
        self._parsed[key] = definition


def bind_inputs(definition: Definition, inputs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return every declared input's value, defaults applied; raise InvalidInputs if any is bad."""
    errors: list[FieldError] = []
    bound = bind_values(
        definition.inputs, inputs, "inputs", "input", "this scenario takes no inputs", errors
    )
    if errors:
        raise InvalidInputs(errors)
    return bound


def bind_values(
    specs: Sequence[InputSpec],
    values: Mapping[str, Any] | None,
    path: str,
    noun: str,
    none_declared: str,
    errors: list[FieldError],
) -> dict[str, Any]:
    """Every declared field's value, defaults applied, checked against `specs` (a scenario's
    inputs or a review's form); each problem is recorded in `errors` as `path.name`."""
    # Null counts as not given, as GraphQL clients send null for unset fields. An optional input
    # without a default binds to None, so `{{ inputs.x or "…" }}` works under StrictUndefined.
    given = dict(values or {})
    bound: dict[str, Any] = {}
    for spec in specs:
        field_path = f"{path}.{spec.name}"
        value = given.pop(spec.name, None)
        if value is None:
            if spec.required:
                errors.append(FieldError(field_path, "required"))
            bound[spec.name] = spec.default
        elif problem := _value_problem(value, spec.type, spec.enum):
            errors.append(FieldError(field_path, problem))
        else:
            bound[spec.name] = value
    names = ", ".join(spec.name for spec in specs)
    for name in given:
        expected = f"expected one of {names}" if names else none_declared
        errors.append(FieldError(f"{path}.{name}", f"unknown {noun}; {expected}"))
    return bound


def parse_input_specs(
    raw: Any, at: str, noun: str, errors: list[FieldError]
) -> tuple[InputSpec, ...]:
    """Typed fields declared as a scenario's inputs are (a review's form is declared so too)."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        errors.append(_wrong_type(at, f"a mapping of {noun} name to spec", raw))
        return ()
    specs = []
    for name, spec in raw.items():
        path = f"{at}.{name}"
        if not INPUT_NAME.fullmatch(name):
            errors.append(
                FieldError(
                    path,
                    f"{'an' if noun[0] in 'aeiou' else 'a'} {noun} name must be letters, digits"
                    " and '_', not starting with a digit,"
                    " at most 100 characters",
                )
            )
        if not isinstance(spec, dict):
            errors.append(_wrong_type(path, "a mapping with a type", spec))
            continue
        if parsed := _parse_input(name, spec, path, errors):
            specs.append(parsed)
    return tuple(specs)


def _parse_input(
    name: str, spec: dict[str, Any], path: str, errors: list[FieldError]
) -> InputSpec | None:
    _check_fields(spec, path, _INPUT_FIELDS, errors)
    count = len(errors)
    raw_type = spec.get("type")
    if not isinstance(raw_type, str) or raw_type not in _TYPE_NAMES:
        allowed = ", ".join(InputType)
        problem = "required" if raw_type is None else f"unknown type {json.dumps(raw_type)}"
        errors.append(FieldError(f"{path}.type", f"{problem}; expected one of {allowed}"))
        return None
    type_ = InputType(raw_type)

    enum = spec.get("enum")
    if enum is not None:
        if not isinstance(enum, list) or not enum:
            errors.append(_wrong_type(f"{path}.enum", f"a non-empty list of {type_} values", enum))
        for i, value in enumerate(enum if isinstance(enum, list) else ()):
            if wrong := _value_problem(value, type_, None):
                errors.append(FieldError(f"{path}.enum[{i}]", wrong))
    enum_values = tuple(enum) if isinstance(enum, list) and enum else None

    default = spec.get("default")
    if default is not None and (wrong := _value_problem(default, type_, enum_values)):
        errors.append(FieldError(f"{path}.default", wrong))
    required = spec.get("required", default is None)
    if not isinstance(required, bool):
        errors.append(_wrong_type(f"{path}.required", "true or false", required))
    elif required and default is not None:
        # Null means "not given", so a required input's default could never apply.
        errors.append(FieldError(f"{path}.required", "a required input cannot have a default"))
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        errors.append(_wrong_type(f"{path}.description", "a string", description))

    if len(errors) > count:
        return None
    return InputSpec(name, type_, required, default, description, enum_values)


def _parse_steps(
    raw: Any, kinds: Mapping[str, ParamsParser], max_steps: int | None, errors: list[FieldError]
) -> tuple[StepSpec, ...]:
    if raw is None:
        errors.append(FieldError("steps", "required"))
        return ()
    if not isinstance(raw, list) or not raw:
        errors.append(_wrong_type("steps", "a non-empty list of steps", raw))
        return ()
    if max_steps is not None and len(raw) > max_steps:
        # Refused before each step is validated: that is the work the limit bounds.
        errors.append(too_big("steps", max_steps, len(raw), "steps"))
        return ()
    steps: list[StepSpec] = []
    # (step key, position, the steps its params read): a review's `show` list.
    reads: list[tuple[str, int, tuple[str, ...]]] = []
    first_index: dict[str, int] = {}
    previous_key: str | None = None
    for i, step in enumerate(raw):
        path = f"steps[{i}]"
        if not isinstance(step, dict):
            errors.append(_wrong_type(path, "a mapping", step))
            continue
        _check_fields(step, path, _STEP_FIELDS, errors)

        key = step.get("key")
        if key is None:
            errors.append(FieldError(f"{path}.key", "required"))
        elif not isinstance(key, str) or not STEP_KEY.fullmatch(key):
            errors.append(
                FieldError(
                    f"{path}.key",
                    "a step key must be letters, digits, '_' and '-', "
                    "not starting with a digit or '-', at most 100 characters",
                )
            )
        elif key in first_index:
            errors.append(
                FieldError(
                    f"{path}.key", f'duplicate key "{key}"; first used by steps[{first_index[key]}]'
                )
            )
        else:
            first_index[key] = i

        kind = step.get("kind")
        if kind is None:
            errors.append(FieldError(f"{path}.kind", "required"))
        elif not isinstance(kind, str) or kind not in kinds:
            known = ", ".join(sorted(kinds)) or "none"
            errors.append(
                FieldError(
                    f"{path}.kind", f"unknown kind {json.dumps(kind)}; expected one of {known}"
                )
            )

        with_ = step.get("with")
        if with_ is None:
            with_ = {}
        if not isinstance(with_, dict):
            errors.append(_wrong_type(f"{path}.with", "a mapping", with_))
        idempotent = False
        secrets_used: tuple[tuple[str, str], ...] = ()
        if isinstance(with_, dict):
            errors.extend(check_syntax(with_, f"{path}.with"))
            if isinstance(kind, str) and kind in kinds:
                try:
                    params = kinds[kind].parse(with_, f"{path}.with")
                except InvalidDefinition as error:
                    errors.extend(error.errors)
                else:
                    idempotent = kinds[kind].idempotent(params)
                    secrets_used = _secrets_used(kinds[kind], params)
                    if isinstance(key, str) and (read := _steps_read(kinds[kind], params)):
                        reads.append((key, i, read))

        expect = NO_EXPECTATIONS
        if isinstance(kind, str) and kind in kinds:  # else the kind's own error says it all
            expect = parse_expect(step.get("expect"), kind, f"{path}.expect", errors)
        timeout = _parse_timeout(step.get("timeout"), f"{path}.timeout", errors)
        needs = _parse_needs(step, path, previous_key, errors)
        previous_key = key if isinstance(key, str) else None
        retries = _parse_retries(step.get("retries"), f"{path}.retries", errors)
        continue_on_failure = step.get("continue_on_failure", False)
        if not isinstance(continue_on_failure, bool):
            errors.append(
                _wrong_type(f"{path}.continue_on_failure", "true or false", continue_on_failure)
            )
            continue_on_failure = False
        on_failure = _parse_on_failure(step.get("on_failure"), f"{path}.on_failure", errors)
        if continue_on_failure and on_failure is OnFailure.PAUSE:
            errors.append(
                FieldError(f"{path}.on_failure", "cannot pause when continue_on_failure is true")
            )
        on_runner_lost = _parse_on_runner_lost(
            step.get("on_runner_lost"), idempotent, f"{path}.on_runner_lost", errors
        )
        secrets = _parse_secrets(step.get("secrets"), f"{path}.secrets", errors)
        for field_name, name in secrets_used:
            if name not in secrets:
                errors.append(
                    FieldError(f"{path}.with.{field_name}", f"list {name} in {path}.secrets too")
                )
        budget = _parse_budget(step.get("budget"), f"{path}.budget", errors)
        if isinstance(key, str) and isinstance(kind, str) and isinstance(with_, dict):
            steps.append(
                StepSpec(
                    key,
                    kind,
                    with_,
                    timeout,
                    i,
                    needs,
                    retries,
                    continue_on_failure,
                    on_failure,
                    expect=expect,
                    on_runner_lost=on_runner_lost,
                    secrets=secrets,
                    budget=budget,
                )
            )
    _check_graph(steps, raw, len(first_index) == len(raw), errors)
    if reads:
        upstream = _upstream(tuple(steps))
        for key, position, read in reads:
            for j, other in enumerate(read):
                if key in upstream and other not in upstream[key]:
                    errors.append(
                        FieldError(
                            f"steps[{position}].with.show[{j}]",
                            f'"{other}" is not a step this one needs (directly or through'
                            " others), so it would not have run yet",
                        )
                    )
    return tuple(steps)


def _check_template_names(
    definition: Definition, raw_inputs: Any, errors: list[FieldError]
) -> None:
    """Every name a template reads is a declared input, or a step finished before its own."""
    # Names as written, so an input whose spec has an error of its own is not reported twice.
    inputs = tuple(raw_inputs) if isinstance(raw_inputs, dict) else ()
    keys = tuple(step.key for step in definition.steps)
    upstream = _upstream(definition.steps)
    for step in definition.steps:
        scope = TemplateScope(inputs, upstream[step.key], keys)
        errors.extend(check_names(step.with_, f"steps[{step.position}].with", scope))
    if definition.concurrency is not None:
        # Rendered when the execution is queued: no step has run yet.
        errors.extend(
            check_names(definition.concurrency.key, "concurrency.key", TemplateScope(inputs))
        )


def _upstream(steps: tuple[StepSpec, ...]) -> dict[str, _StepSet]:
    """Each step's transitive needs: the steps finished when it starts.

    As bit sets over positions, each the union of its needs' own: a sequence of a thousand
    steps (each needing all before it) costs a few milliseconds, not a million set inserts.
    """
    keys = tuple(step.key for step in steps)
    index = {key: i for i, key in enumerate(keys)}
    needs = {step.key: [n for n in step.needs if n in index and n != step.key] for step in steps}
    bits: dict[str, int] = {}
    visiting: set[str] = set()
    for step in steps:
        stack = [(step.key, False)]
        while stack:
            key, expanded = stack.pop()
            if key in bits:
                continue
            if expanded:
                # In a cycle (an error of its own) a need may be unfinished: it adds itself only.
                bits[key] = 0
                for need in needs[key]:
                    bits[key] |= 1 << index[need] | bits.get(need, 0)
                continue
            if key in visiting:
                continue
            visiting.add(key)
            stack.append((key, True))
            stack.extend((need, False) for need in needs[key] if need not in bits)
    return {key: _StepSet(bits[key], keys, index) for key in keys}


class _StepSet(Collection[str]):
    """Step keys as a bit set over their positions, listed in definition order."""

    def __init__(self, bits: int, keys: tuple[str, ...], index: Mapping[str, int]) -> None:
        self._bits = bits
        self._keys = keys  # shared by every step's set, as is `index`
        self._index = index

    def __contains__(self, key: object) -> bool:
        position = self._index.get(key) if isinstance(key, str) else None
        return position is not None and bool(self._bits >> position & 1)

    def __iter__(self) -> Iterator[str]:
        return (key for i, key in enumerate(self._keys) if self._bits >> i & 1)

    def __len__(self) -> int:
        return self._bits.bit_count()


def _secrets_used(kind: ParamsParser, params: Any) -> tuple[tuple[str, str], ...]:
    """(field, secret) pairs a kind's params name (an llm step's api_key_secret), if it says."""
    used = getattr(kind, "secrets_used", None)
    return tuple(used(params)) if used is not None else ()


def _steps_read(kind: ParamsParser, params: Any) -> tuple[str, ...]:
    """The keys of other steps whose results a kind's params show (a review's `show`)."""
    read = getattr(kind, "steps_shown", None)
    return tuple(read(params)) if read is not None else ()


def _parse_needs(
    step: Mapping[str, Any], path: str, previous: str | None, errors: list[FieldError]
) -> tuple[str, ...]:
    if "needs" not in step:
        return () if previous is None else (previous,)
    raw = step["needs"]
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        errors.append(_wrong_type(f"{path}.needs", "a list of step keys", raw))
        return ()
    return tuple(dict.fromkeys(raw))


def _check_graph(
    steps: list[StepSpec], raw: list[Any], keys_valid: bool, errors: list[FieldError]
) -> None:
    """Every need names another step, and following needs never leads back to a step.

    Implicit needs (on the step before) are not checked: a bad step has its own error already.
    Cycles are looked for only when every key is valid and unique, so a duplicate key is not
    reported a second time as a cycle.
    """
    keys = {step.key: step for step in steps}
    for step in steps:
        if "needs" not in raw[step.position]:
            continue
        for j, need in enumerate(step.needs):
            if need == step.key:
                errors.append(
                    FieldError(f"steps[{step.position}].needs[{j}]", "a step cannot need itself")
                )
            elif need not in keys:
                errors.append(
                    FieldError(f"steps[{step.position}].needs[{j}]", f'unknown step "{need}"')
                )
    if not keys_valid:
        return
    # Depth-first search; the first cycle found is reported with its path of keys.
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(key: str, trail: list[str]) -> bool:
        state[key] = 1
        for need in keys[key].needs:
            if need not in keys or need == key:
                continue
            if state.get(need) == 1:
                cycle = [*trail[trail.index(need) :], need]
                errors.append(
                    FieldError(
                        f"steps[{keys[need].position}].needs",
                        f"cycle: {' needs '.join(cycle)}",
                    )
                )
                return True
            if state.get(need) is None and visit(need, [*trail, need]):
                return True
        state[key] = 2
        return False

    for step in steps:
        if state.get(step.key) is None and visit(step.key, [step.key]):
            return


def _parse_retries(raw: Any, path: str, errors: list[FieldError]) -> RetryPolicy | None:
    if raw is None:
        return None
    if _is_number(raw) and isinstance(raw, int):
        raw = {"max": raw}  # `retries: 3` is short for `retries: {max: 3}`
    if not isinstance(raw, dict):
        errors.append(_wrong_type(path, "a mapping with max, delay, backoff", raw))
        return None
    _check_fields(raw, path, _RETRY_FIELDS, errors)
    count = len(errors)
    maximum = _parse_count(raw.get("max"), f"{path}.max", 0, _MAX_RETRIES, None, errors)
    delay = _parse_seconds(raw.get("delay"), f"{path}.delay", 1.0, errors)
    max_delay = _parse_seconds(raw.get("max_delay"), f"{path}.max_delay", 300.0, errors)
    backoff = raw.get("backoff", 2.0)
    if not _is_number(backoff) or not 1 <= backoff <= 10:
        errors.append(FieldError(f"{path}.backoff", "must be a number from 1 to 10"))
    if len(errors) > count or maximum is None:
        return None
    return RetryPolicy(maximum, delay, float(backoff), max_delay)


def _parse_on_failure(raw: Any, path: str, errors: list[FieldError]) -> OnFailure:
    if raw is None:
        return OnFailure.FAIL
    if isinstance(raw, str) and raw in set(OnFailure):
        return OnFailure(raw)
    errors.append(
        FieldError(path, f"expected one of {', '.join(OnFailure)}, got {json.dumps(raw)}")
    )
    return OnFailure.FAIL


def _parse_secrets(raw: Any, path: str, errors: list[FieldError]) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > _MAX_STEP_SECRETS:
        errors.append(_wrong_type(path, f"a list of at most {_MAX_STEP_SECRETS} secret names", raw))
        return ()
    names: list[str] = []
    for j, name in enumerate(raw):
        if isinstance(name, str) and SECRET_NAME.fullmatch(name):
            names.append(name)
        else:
            errors.append(FieldError(f"{path}[{j}]", f"a secret name is {SECRET_NAME_RULE}"))
    return tuple(dict.fromkeys(names))


def _parse_on_runner_lost(
    raw: Any, idempotent: bool, path: str, errors: list[FieldError]
) -> OnRunnerLost:
    if raw is None:
        return OnRunnerLost.RETRY if idempotent else OnRunnerLost.FAIL
    if isinstance(raw, str) and raw in set(OnRunnerLost):
        return OnRunnerLost(raw)
    errors.append(
        FieldError(path, f"expected one of {', '.join(OnRunnerLost)}, got {json.dumps(raw)}")
    )
    return OnRunnerLost.FAIL


def _parse_concurrency(raw: Any, errors: list[FieldError]) -> ConcurrencyLimit | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        errors.append(_wrong_type("concurrency", "a mapping with key and limit", raw))
        return None
    _check_fields(raw, "concurrency", _CONCURRENCY_FIELDS, errors)
    key = raw.get("key")
    if not isinstance(key, str) or not key.strip():
        errors.append(
            FieldError("concurrency.key", "required: a string, usually a template of inputs")
        )
        key = None
    else:
        errors.extend(check_syntax(key, "concurrency.key"))
    limit = _parse_count(raw.get("limit"), "concurrency.limit", 1, 10_000, 1, errors)
    if key is None or limit is None:
        return None
    return ConcurrencyLimit(key, limit)


def _parse_budget(raw: Any, path: str, errors: list[FieldError]) -> Budget:
    """`budget: {max_cost_usd: 0.5, max_tokens: 20000}`; either limit may be left out."""
    if raw is None:
        return NO_BUDGET
    if not isinstance(raw, dict):
        errors.append(_wrong_type(path, "a mapping with max_cost_usd and/or max_tokens", raw))
        return NO_BUDGET
    _check_fields(raw, path, _BUDGET_FIELDS, errors)
    if not raw:
        errors.append(FieldError(path, "set max_cost_usd, max_tokens or both"))
    cost = raw.get("max_cost_usd")
    if cost is not None and (not _is_number(cost) or not 0 < cost <= _MAX_BUDGET_USD):
        errors.append(
            FieldError(
                f"{path}.max_cost_usd", f"must be more than 0 and at most {_MAX_BUDGET_USD:g}"
            )
        )
        cost = None
    tokens = raw.get("max_tokens")
    if tokens is not None and (
        not isinstance(tokens, int)
        or isinstance(tokens, bool)
        or not 0 < tokens <= _MAX_BUDGET_TOKENS
    ):
        errors.append(
            FieldError(
                f"{path}.max_tokens", f"must be a whole number from 1 to {_MAX_BUDGET_TOKENS}"
            )
        )
        tokens = None
    if cost is None and tokens is None:
        return NO_BUDGET
    return Budget(max_cost_usd=None if cost is None else float(cost), max_tokens=tokens)


def _parse_count(
    raw: Any, path: str, low: int, high: int, default: int | None, errors: list[FieldError]
) -> int | None:
    if raw is None:
        if default is None:
            errors.append(FieldError(path, "required"))
        return default
    if not isinstance(raw, int) or isinstance(raw, bool) or not low <= raw <= high:
        errors.append(FieldError(path, f"must be a whole number from {low} to {high}"))
        return default
    return raw


def _parse_seconds(raw: Any, path: str, default: float, errors: list[FieldError]) -> float:
    if raw is None:
        return default
    if not _is_number(raw) or not 0 <= raw <= MAX_SECONDS:
        errors.append(FieldError(path, f"must be a number of seconds from 0 to {MAX_SECONDS}"))
        return default
    return float(raw)


def _parse_timeout(raw: Any, path: str, errors: list[FieldError]) -> float | None:
    if raw is None:
        return None
    if not _is_number(raw):
        errors.append(_wrong_type(path, "a positive number of seconds", raw))
    elif not 0 < raw <= MAX_SECONDS:
        errors.append(FieldError(path, f"must be more than 0 and at most {MAX_SECONDS} seconds"))
    else:
        return float(raw)
    return None


def _check_fields(
    mapping: Mapping[str, Any], path: str, allowed: tuple[str, ...], errors: list[FieldError]
) -> None:
    for field in mapping:
        if field not in allowed:
            errors.append(
                FieldError(
                    _join(path, field), f"unknown field; expected one of {', '.join(allowed)}"
                )
            )


def _value_problem(value: Any, type_: InputType, enum: tuple[Any, ...] | None) -> str | None:
    if not _CHECKS[type_](value):
        return f"expected {type_}, got {_type_name(value)}"
    if enum is not None and value not in enum:
        allowed = ", ".join(json.dumps(item, default=str) for item in enum)
        return f"{json.dumps(value, default=str)} is not one of {allowed}"
    return None


def _is_number(value: Any) -> bool:
    # bool is an int subclass, but `true` is not a number to anyone writing a definition.
    return isinstance(value, int | float) and not isinstance(value, bool)


_CHECKS: dict[InputType, Callable[[Any], bool]] = {
    InputType.STRING: lambda value: isinstance(value, str),
    InputType.INTEGER: lambda value: isinstance(value, int) and not isinstance(value, bool),
    InputType.NUMBER: _is_number,
    InputType.BOOLEAN: lambda value: isinstance(value, bool),
    InputType.OBJECT: lambda value: isinstance(value, dict),
    InputType.ARRAY: lambda value: isinstance(value, list),
}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    for type_ in InputType:
        if _CHECKS[type_](value):
            return str(type_)
    return type(value).__name__


def _wrong_type(path: str, expected: str, value: Any) -> FieldError:
    return FieldError(path, f"must be {expected}, got {_type_name(value)}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def load_document(text_or_mapping: str | Mapping[str, Any], errors: list[FieldError]) -> Any:
    """YAML or JSON text (or a mapping) as plain JSON data, read as definitions are read.

    Malformed text raises InvalidDefinition; values no store keeps are added to `errors`.
    """
    loaded = _load(text_or_mapping) if isinstance(text_or_mapping, str) else text_or_mapping
    return _json_data(loaded, errors)


def _load(text: str) -> Any:
    """Read YAML, or JSON (which PyYAML refuses when it is indented with tabs)."""
    try:
        if text.lstrip().startswith("{"):
            return json.loads(text, object_pairs_hook=_unique_keys)
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except json.JSONDecodeError as error:
        raise InvalidDefinition(
            [
                FieldError(
                    "", f"invalid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
                )
            ]
        ) from error
    except yaml.MarkedYAMLError as error:
        where = ""
        if mark := error.problem_mark:
            where = f" (line {mark.line + 1}, column {mark.column + 1})"
        problem = error.problem or error.context or "syntax error"
        raise InvalidDefinition([FieldError("", f"invalid YAML: {problem}{where}")]) from error
    except (yaml.YAMLError, RecursionError) as error:
        raise InvalidDefinition([FieldError("", f"invalid definition text: {error}")]) from error
    except ValueError as error:
        # An integer of more than 4,300 digits: Python refuses to convert it (quadratic work).
        raise InvalidDefinition([FieldError("", f"invalid definition text: {error}")]) from error


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise InvalidDefinition([FieldError("", f'invalid JSON: duplicate key "{key}"')])
        mapping[key] = value
    return mapping


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f'duplicate key "{key.value}"', key.start_mark
                    )
                seen.add(key.value)
        return super().construct_mapping(node, deep)


# YAML 1.1 reads `no`, `on` and `yes` as booleans and `2024-01-01` as a date: an enum of country
# codes must keep "NO", and dates are not JSON. Only true/false are booleans, as in YAML 1.2.
_BOOL, _TIMESTAMP = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _json_data(value: Any, errors: list[FieldError]) -> Any:
    """Copy `value` as plain JSON data (a tree, even where YAML aliases shared nodes)."""
    count = 0

    def copy(value: Any, path: str) -> Any:
        nonlocal count
        count += 1
        if count > _MAX_VALUES:
            raise InvalidDefinition(
                [FieldError("", f"the definition has more than {_MAX_VALUES} values")]
            )
        if isinstance(value, Mapping):
            plain = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    errors.append(FieldError(_join(path, str(key)), "keys must be strings"))
                elif problem := unstorable(key):
                    errors.append(FieldError(_join(path, printable(key)), f"the key {problem}"))
                else:
                    plain[key] = copy(item, _join(path, key))
            return plain
        if isinstance(value, list | tuple):
            return [copy(item, f"{path}[{i}]") for i, item in enumerate(value)]
        # YAML's "\0" and "\ud800" escapes and JSON's "\u0000" make strings no store keeps.
        # Reported here, and repaired so the rest of the check does not report them again.
        if isinstance(value, str) and (problem := unstorable(value)):
            errors.append(FieldError(path, problem))
            return storable(value)
        # A bad value becomes null, so it is reported here and not again as a wrong type.
        if isinstance(value, float) and not math.isfinite(value):
            errors.append(FieldError(path, "must be a finite number"))
            return None
        if value is not None and not isinstance(value, str | int | float):
            errors.append(FieldError(path, f"a {type(value).__name__} is not JSON data"))
            return None
        return value

    try:
        return copy(value, "")
    except RecursionError as error:
        raise InvalidDefinition([FieldError("", "the definition is nested too deeply")]) from error
