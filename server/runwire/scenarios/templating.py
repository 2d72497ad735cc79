"""Render `{{ … }}` templates in step params: sandboxed, strict about undefined names."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
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
_MARKERS = ("{{", "{%")


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
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _templates(item, _join(path, key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _templates(item, f"{path}[{i}]")
    elif isinstance(value, str) and _is_template(value):
        yield path, value


def _is_template(value: str) -> bool:
    return any(marker in value for marker in _MARKERS)


def _reason(error: Exception) -> str:
    if isinstance(error, TemplateSyntaxError):
        return f"{error.message} (line {error.lineno})"
    return str(error) or type(error).__name__


def _excerpt(source: str, limit: int = 120) -> str:
    return source if len(source) <= limit else source[: limit - 1] + "…"


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)
