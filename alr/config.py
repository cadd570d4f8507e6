"""Load and validate experiment configs against workflow/schemas/config.schema.yaml.

The Snakefile and every `alr` subcommand use this one validator, so an unknown key or a bad value
stops with the same message, naming the key, before any job runs.
"""
from __future__ import annotations

import copy
import difflib
import json
import re
from pathlib import Path

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = REPO_ROOT / "config" / "config.yaml"
# What YAML 1.2 reads as a number but PyYAML (YAML 1.1) as a string: `3e-4`, `1E5`, `.5e3`
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


class ConfigError(ValueError):
    pass


def _schema() -> dict:
    """The schema file, with the names of the method and estimator registries (and so of plugins)."""
    from .importance.estimators import ESTIMATORS
    from .methods import METHODS

    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        schema = yaml.safe_load(fh)
    schema["properties"]["methods"]["items"] = {"enum": list(METHODS)}
    schema["properties"]["baselines"]["properties"]["efficiency_estimators"]["items"] = {"enum": list(ESTIMATORS)}
    # an override section holds any subset of the keys of the sections it overrides, with their types
    props = schema["properties"]
    props["official"]["properties"] = {k: {key: value for key, value in props[k].items() if key != "required"}
                                       for k in OVERRIDABLE}
    return schema


def _describe(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"config key '{key}': unknown key(s) {', '.join(map(repr, extra))}{hint}"
    if error.validator == "enum":
        return f"config key '{key}': {error.instance!r} is not one of {error.validator_value}" + \
            did_you_mean(error.instance, error.validator_value)
    if error.validator == "oneOf" and isinstance(error.instance, dict):
        # `null or a dataset`: the one alternative of the instance's type tells what is wrong
        by_alternative: dict = {}
        for sub in error.context or []:
            by_alternative.setdefault(sub.relative_schema_path[0], []).append(sub)
        candidates = [errs for errs in by_alternative.values()
                      if not any(e.validator == "type" and len(e.relative_schema_path) == 2 for e in errs)]
        if len(candidates) == 1:
            return _describe(jsonschema.exceptions.best_match(candidates[0]))
        return f"config key '{key}': {error.instance!r} matches no allowed form (see config/README.md)"
    return f"config key '{key}': {error.message}"


def did_you_mean(value, known) -> str:
    """` (did you mean 'ewc_lora'?)` for a near miss (case, '-' for '_', a typo), else ''."""
    if not isinstance(value, str):
        return ""
    names = {str(k).lower().replace("-", "_"): str(k) for k in known}
    close = difflib.get_close_matches(value.lower().replace("-", "_"), names, n=1, cutoff=0.75)
    return f" (did you mean {names[close[0]]!r}?)" if close else ""


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


def validate_config(cfg: dict, partial: bool = False) -> dict:
    """Raise ConfigError listing every problem; `partial` accepts a subset of top-level sections.
    Numeric strings where a number belongs (`lr: 3e-4`) are converted in place first."""
    schema = _schema()
    if partial:
        schema = dict(schema, required=[])
    validator = jsonschema.Draft202012Validator(schema)
    _coerce_numbers(cfg, validator)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_describe(e) for e in errors]
    if not problems:
        problems = _cross_checks(cfg)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return cfg


def unknown_domains(known: dict, domains: list[str], where: str) -> list[str]:
    """One problem for each of `domains` without a dataset under data.domains (`known`)."""
    return [f"{where} {d!r} has no dataset under data.domains{did_you_mean(d, known)} (known: {', '.join(known)})"
            for d in domains if d not in known]


def _cross_checks(cfg: dict) -> list[str]:
    problems = []
    if "domains" in cfg and "data" in cfg:
        problems += unknown_domains(datasets(cfg["data"], "domain"), cfg["domains"], "config key 'domains':")
    # entries for methods or domains that are not configured are allowed (they restrict nothing),
    # so trimming `methods` or `domains` never breaks the config; typos are refused
    from .methods import METHODS

    for method, domains in cfg.get("method_domains", {}).items():
        if method not in METHODS:
            problems.append(f"config key 'method_domains.{method}': no method {method!r} "
                            f"(known: {', '.join(METHODS)})")
        known = datasets(cfg["data"], "domain") if "data" in cfg else {}
        if known:
            problems += unknown_domains(known, domains, f"config key 'method_domains.{method}':")
    for where, reg in [("regularize", cfg.get("regularize", {})),
                       ("official.regularize", merge_config(cfg.get("regularize", {}),
                                                            cfg.get("official", {}).get("regularize", {})))]:
        if reg.get("phase2_optimizer") == "phase1" and reg.get("phase2_init") != "phase1":
            problems.append(f"config key '{where}.phase2_optimizer': 'phase1' continues phase 1's optimizer "
                            "state, so it needs phase2_init: phase1 (phase 1's adapter) too")
    if "eval" in cfg and "importance" in cfg and cfg["eval"]["phase1_texts"] > cfg["importance"]["samples"]:
        problems.append(f"config key 'eval.phase1_texts': {cfg['eval']['phase1_texts']} is more than the "
                        f"{cfg['importance']['samples']} texts phase 1 tunes on (importance.samples)")
    if "data" in cfg:
        from .hub import local_file_problems

        for role, where in (("general", "data.general.tasks"), ("domain", "data.domains")):
            for name, spec in datasets(cfg["data"], role).items():
                if spec["source"] == "hub":
                    problems += local_file_problems(f"{where}.{name}", spec)
        problems += [f"config: data file {path} (source: jsonl) does not exist" for path in user_files(cfg["data"])
                     if not Path(path).is_file()]
        problems += _artifact_problems(cfg["data"])
        for name, spec in datasets(cfg["data"], "domain").items():
            if spec["source"] == "lm_eval":
                problems.append(f"config key 'data.domains.{name}': a domain needs training data; source "
                                "'lm_eval' is for general evaluation tasks only")
        tasks, domains = set(datasets(cfg["data"], "general")), set(datasets(cfg["data"], "domain"))
        clash = (tasks & domains) | ({"general_text"} & (tasks | domains))
        if clash:
            problems.append(f"config key 'data': dataset names must be unique and not 'general_text': {sorted(clash)}")
    return problems


def _artifact_problems(data_cfg: dict) -> list[str]:
    """Every registry file a dataset names must come from an artifact of data.artifacts, and BIG-bench
    sources need data.bigbench."""
    from .general_text import sources

    problems = []
    artifacts = data_cfg.get("artifacts", {})
    named = {**datasets(data_cfg),
             **{f"general.text.sources.{n}": s for n, s in sources(data_cfg["general"]["text"]).items()}}
    for name, spec in named.items():
        for alt in spec.get("files", []):
            if alt["artifact"] not in artifacts:
                problems.append(f"config: dataset {name!r} reads {alt['member']} from artifact "
                                f"{alt['artifact']!r}, which data.artifacts does not define"
                                f"{did_you_mean(alt['artifact'], artifacts)}")
        if spec["source"] == "bigbench" and "bigbench" not in data_cfg:
            problems.append(f"config: dataset {name!r} has source 'bigbench', which needs data.bigbench "
                            "(the pinned sdist or a local archive of it; config/config.yaml has the pins)")
    return problems


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


def merge_config(base: dict, over: dict) -> dict:
    """`over` merged into a copy of `base` key by key, as `snakemake --configfile` merges a file over
    the workflow's config/config.yaml (nested mappings merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merge_config(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


OVERRIDABLE = ("importance", "regularize")  # the sections an override section (`official`) may hold


def with_overrides(cfg: dict, settings: str | None) -> dict:
    """The config a method or estimator with `settings` (a section name such as `official`) runs with:
    that section's sub-sections merged over the top-level ones (`official.regularize.lambda` replaces
    `regularize.lambda`), so `alr_official` and `alr` run side by side from one config."""
    if settings is None:
        return cfg
    return merge_config(cfg, {k: v for k, v in cfg[settings].items() if k in OVERRIDABLE})


def check_config_files(paths: list[str | Path], replace: bool = False) -> dict:
    """What `snakemake --configfile PATHS` would run with (merged over config/config.yaml unless
    `replace`, as `--replace-workflow-config`), validated; errors name the file and line."""
    cfg = {} if replace else read_config_file(DEFAULT_CONFIG)
    for path in paths:
        cfg = merge_config(cfg, read_config_file(path))
    return validate_config(cfg)


def datasets(data_cfg: dict, role: str | None = None, built: bool | None = None) -> dict[str, dict]:
    """The dataset specs of `data_cfg` by name: `role` "general" (the general tasks), "domain" or None
    (both, general first); `built` True: those `alr prepare-data` writes, False: the built-in lm-eval
    tasks (evaluated from lm-eval's own data), None: all."""
    specs = {**(data_cfg["general"]["tasks"] if role in (None, "general") else {}),
             **(data_cfg["domains"] if role in (None, "domain") else {})}
    return {n: s for n, s in specs.items() if s and (built is None or (s["source"] != "lm_eval") == built)}


def data_in_use(cfg: dict) -> dict:
    """The `data` section with only what the run uses: the domains `domains` names, and no dataset or
    text source switched off with null. `alr prepare-data` builds exactly these, so a default
    dataset you do not use is never downloaded."""
    from .general_text import sources

    data = copy.deepcopy(cfg["data"])
    wanted = cfg.get("domains", list(data["domains"]))
    data["domains"] = {n: s for n, s in datasets(data, "domain").items() if n in wanted}
    data["general"]["tasks"] = datasets(data, "general")
    data["general"]["text"]["sources"] = sources(data["general"]["text"])
    return data


def dataset_splits(data_cfg: dict, name: str) -> list[str]:
    """The split files `alr prepare-data` writes for a dataset: a general task only its test split
    (nothing trains on it); a domain and the general text (`GENERAL_TEXT`) also train, and valid
    when their valid_size is above 0."""
    if name in data_cfg["general"]["tasks"]:
        return ["test"]
    if name in data_cfg["domains"]:
        valid = data_cfg["domains"][name].get("valid_size", data_cfg["valid_size"])
    else:
        from .general_text import sources

        text = data_cfg["general"]["text"]
        valid = any(s.get("valid_size", text["valid_size"]) or "valid" in s for s in sources(text).values())
    return ["test", "valid", "train"] if valid else ["test", "train"]


def jsonl_files(spec: dict) -> list[str]:
    """The user's own files of one dataset spec (`source: jsonl`: `path`, or `train` and `test`)."""
    return [spec[key]
            for key in ("path", "train", "valid", "test") if key in spec] if spec.get("source") == "jsonl" else []


def user_files(data_cfg: dict) -> list[str]:
    """Every user file a config names: prepare-data's inputs."""
    from .general_text import sources

    specs = [*datasets(data_cfg).values(), *sources(data_cfg["general"]["text"]).values()]
    return [path for spec in specs for path in jsonl_files(spec)]


def _flatten(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def differences(saved: dict, current: dict, saved_in: str) -> list[str]:
    """`key.path: <saved> in <saved_in>, <current> now` for every flattened key whose value differs
    (checkpoint identities, the settings an importance file was made with)."""
    a, b = _flatten(saved), _flatten(current)
    return [f"{k}: {a.get(k, '<absent>')!r} in {saved_in}, {b.get(k, '<absent>')!r} now"
            for k in sorted(set(a) | set(b)) if a.get(k, "<absent>") != b.get(k, "<absent>")]


def section(cfg: dict, *keys: str) -> dict:
    """The named top-level sections of a config (what a rule passes to its `alr` command)."""
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise ConfigError(f"the config has no section {', '.join(map(repr, missing))}; this command reads "
                          f"{', '.join(keys)} (config/config.yaml has them all)")
    return {k: cfg[k] for k in keys}
