"""Load and validate experiment configs against workflow/schemas/config.schema.yaml.

The Snakefile and every `alr` subcommand use this one validator, so an unknown key or a bad value
stops with the same message, naming the key, before any job runs.

The schema's lists of method and estimator names come from the registries, which hand themselves
to `schema_registry` when they are imported (`alr.plugins.load_plugins` imports them, and the
ALR_PLUGINS modules, in every entry point); this module imports neither.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path

import jsonschema
import yaml

from .assets.catalogue import data_in_use, datasets, unknown_domains, user_files
from .assets.general_text import sources
from .assets.rules import data_problems
from .assets.sources.hub import local_file_problems
from .core.errors import ConfigError, did_you_mean
from .core.layout import REPO_ROOT
from .core.sections import OVERRIDABLE, merge_config

SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = REPO_ROOT / "config" / "config.yaml"
# What YAML 1.2 reads as a number but PyYAML (YAML 1.1) as a string: `3e-4`, `1E5`, `.5e3`
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


# where each registry's names go in the schema (as an enum); the registries fill in _REGISTRIES
_ENUM_PATHS = {
    "methods": ("methods", "items"),
    "estimators": ("baselines", "properties", "efficiency_estimators", "items"),
}
_REGISTRIES: dict[str, Mapping] = {}


def schema_registry(kind: str, registry: Mapping) -> None:
    """Let the schema accept the names of `registry` (a live mapping, so later registrations count)
    where `kind` ("methods" or "estimators") goes."""
    if kind not in _ENUM_PATHS:
        raise ValueError(f"no schema place for registry {kind!r} (known: {', '.join(_ENUM_PATHS)})")
    _REGISTRIES[kind] = registry


def _registry(kind: str) -> Mapping:
    if kind not in _REGISTRIES:
        raise RuntimeError(
            f"the {kind} registry is not loaded: call alr.plugins.load_plugins() before "
            "validating a config (every alr entry point does)"
        )
    return _REGISTRIES[kind]


@functools.lru_cache(maxsize=1)
def _schema_file() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def schema_has_key(dotted: str) -> bool:
    """Whether the schema defines the config key `dotted` (`fisher.lambda`, or a section: `kl`)."""
    node = _schema_file()
    for part in dotted.split("."):
        node = node.get("properties", {}).get(part)
        if node is None:
            return False
    return True


def _schema() -> dict:
    """The schema file, with the names of the method and estimator registries (and so of plugins)."""
    schema = copy.deepcopy(_schema_file())
    for kind, (*parents, last) in _ENUM_PATHS.items():
        holder = schema["properties"]
        for key in parents:
            holder = holder[key]
        holder[last] = {"enum": list(_registry(kind))}
    # an override section holds any subset of the keys of the sections it overrides, with their types
    props = schema["properties"]
    props["official"]["properties"] = {
        k: {key: value for key, value in props[k].items() if key != "required"} for k in OVERRIDABLE
    }
    return schema


# keys that left the config, and where their meaning lives now
MOVED = {
    f"eval.compare.{key}": f"; '{key}' moved to the claims protocol (config/protocol.yaml, docs/protocol.md)"
    for key in ("margin", "min_effect")
}


def _describe(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        moved = [MOVED[f"{key}.{k}"] for k in extra if f"{key}.{k}" in MOVED]
        inherited = (
            f"; a config file merges over config/config.yaml key by key, so a {error.instance['type']!r} "
            "source keeps the other keys of the source it replaces: give a complete config (`complete: true`)"
            if isinstance(error.instance, dict) and "type" in error.instance
            else ""
        )
        return f"config key '{key}': unknown key(s) {', '.join(map(repr, extra))}{hint}{inherited}" + "".join(moved)
    if error.validator == "enum":
        return f"config key '{key}': {error.instance!r} is not one of {error.validator_value}" + did_you_mean(
            error.instance, error.validator_value
        )
    if error.validator in ("oneOf", "anyOf"):
        # `null or a dataset`, `a number or a list`: the one alternative of the instance's type tells what is wrong
        by_alternative: dict = {}
        for sub in error.context or []:
            by_alternative.setdefault(sub.relative_schema_path[0], []).append(sub)
        candidates = [
            errs
            for errs in by_alternative.values()
            if not any(e.validator == "type" and len(e.relative_schema_path) == 2 for e in errs)
        ]
        if len(candidates) > 1 and isinstance(error.instance, dict) and "type" in error.instance:
            # a source's `type` names its form: the alternatives whose own `type` refused it are not meant
            candidates = [errs for errs in candidates if not any(list(e.path) == ["type"] for e in errs)]
        if len(candidates) == 1:
            return _describe(jsonschema.exceptions.best_match(candidates[0]))
        return f"config key '{key}': {error.instance!r} matches no allowed form (see config/README.md)"
    if error.validator == "pattern" and key.endswith("filename"):
        return (
            f"config key '{key}': {error.instance!r} is not a plain file name; give the registry file's own "
            "name (no folder, no '..'), or point `archive:` at a local copy"
        )
    return f"config key '{key}': {error.message}"


def _coerce_numbers(cfg: dict, validator) -> None:
    """Where the schema wants a number and the config holds a numeric string such as `3e-4` (YAML
    1.2 reads it as a float, PyYAML as a string), store the number; everything else is untouched."""

    def with_alternatives(errors):  # a oneOf (regularize.lambda: a number or a list) holds its own errors
        for error in errors:
            yield error
            yield from with_alternatives(error.context or [])

    for error in list(with_alternatives(validator.iter_errors(cfg))):
        wanted = error.validator_value if error.validator == "type" else None
        wanted = [wanted] if isinstance(wanted, str) else (wanted or [])
        if "number" in wanted and isinstance(error.instance, str) and _NUMBER.match(error.instance.strip()):
            *parents, last = error.absolute_path
            holder = cfg
            for p in parents:
                holder = holder[p]
            holder[last] = float(error.instance)


def _without_required(schema: dict) -> dict:
    """The schema with no `required` list at the top level or in a section: a rule passes a command
    whole sections or single keys of a section (`fisher.samples`), never part of a deeper object."""
    props = {
        name: {k: v for k, v in spec.items() if k != "required"} if isinstance(spec, dict) else spec
        for name, spec in schema["properties"].items()
    }
    return dict(schema, required=[], properties=props)


def validate_config(cfg: dict, partial: bool = False) -> dict:
    """Raise ConfigError listing every problem; `partial` accepts any subset of the sections and of
    their keys (what a rule passes a command: the keys it reads, which the command then checks). Numeric strings where
    a number belongs (`lr: 3e-4`) are converted in place first."""
    schema = _schema()
    if partial:
        schema = _without_required(schema)
    validator = jsonschema.Draft202012Validator(schema)
    _coerce_numbers(cfg, validator)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_describe(e) for e in errors]
    if not problems:
        problems = _cross_checks(cfg)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return cfg


def _cross_checks(cfg: dict) -> list[str]:
    problems = []
    if "domains" in cfg and "data" in cfg:
        problems += unknown_domains(datasets(cfg["data"], "domain"), cfg["domains"], "config key 'domains':")
    # entries for methods or domains that are not configured are allowed (they restrict nothing),
    # so trimming `methods` or `domains` never breaks the config; typos are refused
    methods = _registry("methods")
    for method, domains in cfg.get("method_domains", {}).items():
        if method not in methods:
            problems.append(f"config key 'method_domains.{method}': no method {method!r} (known: {', '.join(methods)})")
        known = datasets(cfg["data"], "domain") if "data" in cfg else {}
        if known:
            problems += unknown_domains(known, domains, f"config key 'method_domains.{method}':")
    for where, reg in [
        ("regularize", cfg.get("regularize", {})),
        ("official.regularize", merge_config(cfg.get("regularize", {}), cfg.get("official", {}).get("regularize", {}))),
    ]:
        if reg.get("phase2_optimizer") == "phase1" and reg.get("phase2_init") != "phase1":
            problems.append(
                f"config key '{where}.phase2_optimizer': 'phase1' continues phase 1's optimizer "
                "state, so it needs phase2_init: phase1 (phase 1's adapter) too"
            )
    if "eval" in cfg and "importance" in cfg and cfg["eval"]["phase1_texts"] > cfg["importance"]["samples"]:
        problems.append(
            f"config key 'eval.phase1_texts': {cfg['eval']['phase1_texts']} is more than the "
            f"{cfg['importance']['samples']} texts phase 1 tunes on (importance.samples)"
        )
    if "data" in cfg:
        for role, where in (("general", "data.general.tasks"), ("domain", "data.domains")):
            for name, spec in datasets(cfg["data"], role).items():
                if spec["source"] == "hub":
                    problems += local_file_problems(f"{where}.{name}", spec)
        problems += [
            f"config: data file {path} (source: jsonl) does not exist"
            for path in user_files(cfg["data"])
            if not Path(path).is_file()
        ]
        problems += _artifact_problems(cfg["data"])
        problems += _template_problems(cfg["data"])
        for name, spec in datasets(cfg["data"], "domain").items():
            if spec["source"] == "lm_eval":
                problems.append(
                    f"config key 'data.domains.{name}': a domain needs training data; source "
                    "'lm_eval' is for general evaluation tasks only"
                )
        if "domains" in cfg:  # a job's own section of `data` is already what the run uses
            problems += data_problems(data_in_use(cfg))
        tasks, domains = set(datasets(cfg["data"], "general")), set(datasets(cfg["data"], "domain"))
        clash = (tasks & domains) | ({"general_text"} & (tasks | domains))
        if clash:
            problems.append(f"config key 'data': dataset names must be unique and not 'general_text': {sorted(clash)}")
    return problems


def _artifact_problems(data_cfg: dict) -> list[str]:
    """Every registry file a dataset names must come from an artifact of data.artifacts, and BIG-bench
    sources need data.bigbench."""
    problems = []
    artifacts = data_cfg.get("artifacts", {})
    named = {
        **datasets(data_cfg),
        **{f"general.text.sources.{n}": s for n, s in sources(data_cfg["general"]["text"]).items()},
    }
    for name, spec in named.items():
        for alt in spec.get("files", []):
            if alt["artifact"] not in artifacts:
                problems.append(
                    f"config: dataset {name!r} reads {alt['member']} from artifact {alt['artifact']!r}, which "
                    f"data.artifacts does not define{did_you_mean(alt['artifact'], artifacts)}"
                )
        if spec["source"] == "bigbench" and "bigbench" not in data_cfg:
            problems.append(
                f"config: dataset {name!r} has source 'bigbench', which needs data.bigbench (the pinned sdist "
                "or a local archive of it; config/config.yaml has the pins)"
            )
    return problems


def _template_problems(data_cfg: dict) -> list[str]:
    """Every `doc_to_*` template of a dataset or text source that is no Jinja template, or whose
    rendering the sandbox refuses (alr.assets.templates: a template must not reach Python's internals)."""
    from .assets.templates import template_problems

    specs = {
        **{f"data.general.tasks.{n}": s for n, s in datasets(data_cfg, "general").items()},
        **{f"data.domains.{n}": s for n, s in datasets(data_cfg, "domain").items()},
        **{f"data.general.text.sources.{n}": s for n, s in sources(data_cfg["general"]["text"]).items()},
    }
    return [problem for where, spec in specs.items() for problem in template_problems(where, spec)]


def read_config_file(path: str | Path) -> dict:
    """A YAML (or JSON) config file as a dict; a missing file or a syntax error names file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        with open(path, encoding="utf-8") as fh:
            cfg = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start:
            context += f" that starts at line {start.line + 1}, column {start.column + 1}"
        raise ConfigError(f"{where}: YAML syntax error: {problem}{f' ({context})' if context else ''}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys to values, got {type(cfg).__name__}")
    return cfg


def load_config(path_or_json: str | Path, partial: bool = False) -> dict:
    """A YAML/JSON file path, or an inline JSON object (as Snakemake rules pass it)."""
    text = str(path_or_json)
    if text.lstrip().startswith("{"):
        try:
            cfg = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"inline JSON config: {exc}") from None
    else:
        cfg = read_config_file(text)
    if not isinstance(cfg, dict):
        raise ConfigError("a config must be a mapping of keys to values")
    return validate_config(cfg, partial=partial)


def workflow_config(user: dict, replace: bool = False) -> dict:
    """The config a run uses: the user's (the --configfile files merged in order, and --config) over
    config/config.yaml, or the user's alone when it says `complete: true` or `replace` is set
    (`--replace-workflow-config`). The key travels with the file, so a cluster job, which Snakemake
    starts with the config files but without that flag, reads the same config as the main process."""
    if replace or user.get("complete") is True:
        return user
    return merge_config(read_config_file(DEFAULT_CONFIG), user)


def check_config_files(paths: list[str | Path], replace: bool = False) -> dict:
    """What `snakemake --configfile PATHS` would run with (alr.config.workflow_config), validated;
    errors name the file and line."""
    user: dict = {}
    for path in paths:
        user = merge_config(user, read_config_file(path))
    return validate_config(workflow_config(user, replace))
