"""Pure functions on config dicts: merging a file or an override section over another, the
sections a command reads, and the differences between two configs (checkpoint identities, sidecars)."""
from __future__ import annotations

import copy

from .errors import ConfigError


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


def section(cfg: dict, *keys: str) -> dict:
    """The named top-level sections of a config (what a rule passes to its `alr` command)."""
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise ConfigError(f"the config has no section {', '.join(map(repr, missing))}; this command reads "
                          f"{', '.join(keys)} (config/config.yaml has them all)")
    return {k: cfg[k] for k in keys}


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
