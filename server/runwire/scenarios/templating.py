"""Render `{{ … }}` templates in step params: sandboxed, strict about undefined names.

A template sees two names: `inputs` (the declared inputs, bound) and `steps` (each finished
step's `output`, `exit_code` and `status`, by key). `check_names` holds a definition to that
when it is saved or started, so a misspelt name is a validation error naming the field, not a
failure minutes into a run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from runwire.errors import FieldError, RunwireError

# The sandbox keeps templates away from Python internals; it does not bound CPU or memory
# (Jinja documents this). Templates are written by definition authors, who can run shell
# steps anyway; inputs are only ever values, never rendered as templates themselves.
_ENV = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,  # a script's final newline is part of the script
)
# What a finished step shows templates (runner/execution.py records these three).
STEP_FIELDS = ("output", "exit_code", "status")


@dataclass(frozen=True, slots=True)
class TemplateScope:
    """The names templates of one field may read.

    `steps` are the keys of the steps that finish before it (None where no step is visible, as
    in `concurrency.key`); `all_steps` every key, to tell a misspelt step from one not upstream.
    """

    inputs: tuple[str, ...]
    steps: Collection[str] | None = None
    all_steps: tuple[str, ...] = ()


class TemplateError(RunwireError):
    """A template could not be rendered."""

    def __init__(self, path: str, source: str, reason: str) -> None:
        self.path = path
        # Without the path, for a field error that names the path on its own.
        self.reason = f'cannot render "{_excerpt(source)}": {reason}'
        super().__init__(f"{path}: {self.reason}")


def render(value: Any, context: Mapping[str, Any], path: str) -> Any:
    """Return a copy of JSON-like `value` with every template string rendered against `context`."""
    if isinstance(value, Mapping):
        return {key: render(item, context, _join(path, key)) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render(item, context, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, str) and _is_template(value):
        try:
            return _plain(_compile(value)(context))
        except Exception as error:  # 1/0, "a" + 1, undefined names: all the author's to fix
            raise TemplateError(path, value, _reason(error)) from error
    return value


def check_syntax(value: Any, path: str) -> list[FieldError]:
    """Report the template strings in `value` that do not compile."""
    errors = []
    for where, source in _templates(value, path):
        try:
            _compile(source)
        except TemplateSyntaxError as error:
            errors.append(FieldError(where, f"template syntax error: {_reason(error)}"))
    return errors


def check_names(value: Any, path: str, scope: TemplateScope) -> list[FieldError]:
    """Report each name a template in `value` reads that `scope` does not have.

    Only names written out are checked (`inputs.name`, `inputs["name"]`, `steps.build.output`);
    computed ones (`inputs[key]`) are left to run time. Templates that do not compile are
    `check_syntax`'s to report.
    """
    errors: list[FieldError] = []
    for where, source in _templates(value, path):
        try:
            found = _references(source)
        except TemplateSyntaxError:
            continue
        errors.extend(FieldError(where, problem) for problem in _problems(found, scope))
    return errors


@dataclass(frozen=True, slots=True)
class _References:
    """The names one template reads from its context."""

    top: frozenset[str]  # names read and not set by the template itself
    inputs: tuple[str, ...]
    steps: tuple[str, ...]
    step_fields: tuple[tuple[str, str], ...]  # (step key, field)


@functools.lru_cache(maxsize=4096)
def _references(source: str) -> _References:
    tree = _ENV.parse(source)
    top = frozenset(meta.find_undeclared_variables(tree))
    inputs: list[str] = []
    steps: list[str] = []
    fields: list[tuple[str, str]] = []
    for found in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(found, nodes.Getattr | nodes.Getitem)
        node: nodes.Getattr | nodes.Getitem = found
        if (named := _named(node, "inputs")) is not None:
            inputs.append(named)
        elif (named := _named(node, "steps")) is not None:
            steps.append(named)
        elif (
            isinstance(node.node, nodes.Getattr | nodes.Getitem)
            and (key := _named(node.node, "steps")) is not None
            and (field := _key_of(node)) is not None
        ):
            fields.append((key, field))
    return _References(
        top=top,
        inputs=tuple(dict.fromkeys(inputs)) if "inputs" in top else (),
        steps=tuple(dict.fromkeys(steps)) if "steps" in top else (),
        step_fields=tuple(dict.fromkeys(fields)) if "steps" in top else (),
    )


def _named(node: nodes.Getattr | nodes.Getitem, mapping: str) -> str | None:
    """The key `node` reads from the context's `mapping`, when written out (`inputs.x`)."""
    target = node.node
    if isinstance(target, nodes.Name) and target.name == mapping and target.ctx == "load":
        return _key_of(node)
    return None


def _key_of(node: nodes.Getattr | nodes.Getitem) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def _problems(found: _References, scope: TemplateScope) -> Iterator[str]:
    visible = ("inputs", "steps") if scope.steps is not None else ("inputs",)
    for name in sorted(found.top - set(visible)):
        if name == "secrets":
            yield (
                "unknown name 'secrets': templates cannot read secrets; a step's listed"
                " secrets reach it as environment variables"
            )
        else:
            yield f"unknown name '{name}' (templates here read: {', '.join(visible)})"
    for name in found.inputs:
        # `inputs.items()` and the like are the mapping's own methods, which Jinja allows.
        if name not in scope.inputs and not hasattr(dict, name):
            known = f"inputs: {', '.join(scope.inputs)}" if scope.inputs else "none declared"
            yield f"unknown input '{name}' ({known})"
    if scope.steps is None:
        return
    for key in found.steps:
        if key in scope.steps or hasattr(dict, key):
            continue
        upstream = f"it may read: {', '.join(scope.steps)}" if scope.steps else "it reads none"
        if key in scope.all_steps:
            yield (
                f"step '{key}' has not finished when this step runs: add it to this step's"
                f" needs ({upstream})"
            )
        else:
            yield f"unknown step '{key}' (steps: {', '.join(scope.all_steps)})"
    for key, field in found.step_fields:
        if key in scope.steps and field not in STEP_FIELDS and not hasattr(dict, field):
            yield f"unknown field '{field}' of step '{key}' (fields: {', '.join(STEP_FIELDS)})"


@functools.lru_cache(maxsize=4096)
def _compile(source: str) -> Callable[[Mapping[str, Any]], Any]:
    """Compile once: a lone `{{ expression }}` keeps its native type, the rest renders to str."""
    tree = _ENV.parse(source)
    if _is_single_expression(tree, source):
        inner = source.strip()[2:-2]
        # `{{-` and `-}}` only control whitespace, which a native value does not have.
        inner = inner[1:] if inner[:1] in "-+" else inner
        inner = inner[:-1] if inner[-1:] in "-+" else inner
        expression = _ENV.compile_expression(inner, undefined_to_none=False)
        return lambda context: expression(**context)
    return _ENV.from_string(tree).render


def _is_single_expression(tree: nodes.Template, source: str) -> bool:
    stripped = source.strip()
    if not (stripped.startswith("{{") and stripped.endswith("}}")):
        return False
    if len(tree.body) != 1 or not isinstance(output := tree.body[0], nodes.Output):
        return False
    parts = [
        node
        for node in output.nodes
        if not (isinstance(node, nodes.TemplateData) and not node.data.strip())
    ]
    return len(parts) == 1 and not isinstance(parts[0], nodes.TemplateData)


def _plain(value: Any) -> Any:
    """Return a native result as JSON data, so rendered params can be stored and sent."""
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises its "has no attribute" error when printed
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    raise TypeError(f"the result is a {type(value).__name__}, not JSON data")


def _templates(value: Any, path: str) -> Iterator[tuple[str, str]]:
    # Leaves first and plain dicts before the Mapping ABC: every start walks each step's
    # `with` twice (syntax, then names), and ABC checks on every string were most of it.
    if isinstance(value, str):
        if _is_template(value):
            yield path, value
    elif isinstance(value, dict | Mapping):
        for key, item in value.items():
            yield from _templates(item, _join(path, key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _templates(item, f"{path}[{i}]")


def _is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


def _reason(error: Exception) -> str:
    if isinstance(error, TemplateSyntaxError):
        return f"{error.message} (line {error.lineno})"
    return str(error) or type(error).__name__


def _excerpt(source: str, limit: int = 120) -> str:
    return source if len(source) <= limit else source[: limit - 1] + "…"


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)
