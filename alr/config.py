"""Load and validate experiment configs against workflow/schemas/config.schema.yaml.

The Snakefile and every `alr` subcommand use this one validator, so an unknown key or a bad value
stops with the same message, naming the key, before any job runs.
"""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    pass


def _schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _describe(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"config key '{key}': unknown key(s) {', '.join(map(repr, extra))}{hint}"
    if error.validator == "enum":
        return f"config key '{key}': {error.instance!r} is not one of {error.validator_value}"
    if error.validator == "oneOf" and isinstance(error.instance, dict):
        return f"config key '{key}': {error.instance!r} matches no allowed form (see config/README.md)"
    return f"config key '{key}': {error.message}"


def validate_config(cfg: dict, partial: bool = False) -> dict:
    """Raise ConfigError listing every problem; `partial` accepts a subset of top-level sections."""
    schema = _schema()
    if partial:
        schema = dict(schema, required=[])
    validator = jsonschema.Draft202012Validator(schema)
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
        known = cfg["data"]["domains"]
        for d in cfg["domains"]:
            if d not in known:
                problems.append(f"config key 'domains': {d!r} has no dataset under data.domains "
                                f"(known: {', '.join(known)})")
    # entries for methods or domains that are not configured are allowed (they restrict nothing),
    # so trimming `methods` or `domains` never breaks the config; typos are refused
    from .methods import METHODS

    for method, domains in cfg.get("method_domains", {}).items():
        if method not in METHODS:
            problems.append(f"config key 'method_domains.{method}': no method {method!r} "
                            f"(known: {', '.join(METHODS)})")
        known = cfg.get("data", {}).get("domains", {})
        for d in domains:
            if known and d not in known:
                problems.append(f"config key 'method_domains.{method}': {d!r} has no dataset under data.domains "
                                f"(known: {', '.join(known)})")
    if "data" in cfg:
        for name, spec in cfg["data"]["domains"].items():
            if spec["source"] == "lm_eval":
                problems.append(f"config key 'data.domains.{name}': a domain needs training data; source "
                                "'lm_eval' is for general evaluation tasks only")
        clash = set(cfg["data"]["general"]["tasks"]) & set(cfg["data"]["domains"])
        clash |= {"general_text"} & (set(cfg["data"]["general"]["tasks"]) | set(cfg["data"]["domains"]))
        if clash:
            problems.append(f"config key 'data': dataset names must be unique and not 'general_text': {sorted(clash)}")
    return problems


def load_config(path_or_json: str | Path, partial: bool = False) -> dict:
    """A YAML/JSON file path, or an inline JSON object (as Snakemake rules pass it)."""
    text = str(path_or_json)
    if text.lstrip().startswith("{"):
        cfg = json.loads(text)
    else:
        path = Path(text)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        with open(path, encoding="utf-8") as fh:
            cfg = yaml.safe_load(fh)
    if not isinstance(cfg, dict):
        raise ConfigError("a config must be a mapping of keys to values")
    return validate_config(cfg, partial=partial)


def section(cfg: dict, *keys: str) -> dict:
    """The named top-level sections of a config (what a rule passes to its `alr` command)."""
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise ConfigError(f"the config has no section {', '.join(map(repr, missing))}; this command reads "
                          f"{', '.join(keys)} (config/config.yaml has them all)")
    return {k: cfg[k] for k in keys}
