"""The config's Jinja templates (the `doc_to_*` keys of registry datasets, alr.assets.sources.wheels), rendered in
jinja2's immutable sandbox: a template reads a record's fields and cannot reach Python's internals
(`cycler.__init__.__globals__`, `''.__class__.__mro__`) or change a value, so a shared config file
cannot run code. What the sandbox refuses is a mistake in the config: one line naming the key.
"""

from __future__ import annotations

from functools import cache

from ..core.errors import ConfigError

TEMPLATE_KEYS = ("doc_to_text", "doc_to_choice", "doc_to_target")


@cache
def _environment():
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


@cache
def _compiled(text: str):
    return _environment().from_string(text)


def _refused(where: str, exc: Exception) -> str:
    reason = str(exc).rstrip(".")
    return f"{where}: the template sandbox refused it ({reason}); rewrite it to read only the record's fields"


def render(template, doc: dict, where: str):
    """A template value of the config applied to one record: a string is a Jinja template, a list
    renders element-wise, anything else is returned as is. `where` names the config key in the
    ConfigError of a template the sandbox refuses."""
    from jinja2.exceptions import SecurityError

    if isinstance(template, str):
        try:
            return _compiled(template).render(**doc)
        except SecurityError as exc:
            raise ConfigError(_refused(where, exc)) from None
    if isinstance(template, list):
        return [render(t, doc, f"{where}.{i}") for i, t in enumerate(template)]
    return template


def template_problem(where: str, text: str) -> str | None:
    """What `check-config` says of one template: its syntax error, or what the sandbox refuses when it
    renders the template against a probe record whose every field the template reads is the string
    "x". Any other failure on the probe says nothing (it is not real data); a refusal that only a real
    record reaches stops `alr prepare-data` with the same line."""
    import jinja2
    from jinja2 import meta
    from jinja2.exceptions import SecurityError

    env = _environment()
    try:
        fields = meta.find_undeclared_variables(env.parse(text)) - set(env.globals)
        _compiled(text).render(**dict.fromkeys(fields, "x"))
    except jinja2.TemplateSyntaxError as exc:
        return f"config key '{where}': not a Jinja template: {exc.message} (line {exc.lineno})"
    except SecurityError as exc:
        return _refused(f"config key '{where}'", exc)
    except (jinja2.TemplateError, TypeError, ValueError, LookupError, ArithmeticError, AttributeError):
        return None
    return None


def template_problems(where: str, spec: dict) -> list[str]:
    """template_problem of each template of one dataset or text source `spec` (at config key `where`)."""
    problems = []
    for key in TEMPLATE_KEYS:
        value = spec.get(key)
        texts = value if isinstance(value, list) else [value]
        for i, text in enumerate(texts):
            if isinstance(text, str):
                suffix = f".{i}" if isinstance(value, list) else ""
                problems.append(template_problem(f"{where}.{key}{suffix}", text))
    return [p for p in problems if p]
