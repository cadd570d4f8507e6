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
        out[key] = (
            merge_config(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else copy.deepcopy(value)
        )
    return out


OVERRIDABLE = ("importance", "regularize")  # the sections an override section (`official`) may hold


def with_overrides(cfg: dict, settings: str | None) -> dict:
    """The config a method or estimator with `settings` (a section name such as `official`) runs with:
    that section's sub-sections merged over the top-level ones (`official.regularize.lambda` replaces
    `regularize.lambda`), so `alr_official` and `alr` run side by side from one config."""
    if settings is None:
        return cfg
    return merge_config(cfg, {k: v for k, v in cfg[settings].items() if k in OVERRIDABLE})


# Keys that choose what the workflow asks of a job, not what the job computes with what it is asked:
# `section` never hands them to a job, so changing one reruns nothing already done and is no part of a run's
# identity. `train.report_to` (where training metrics go) reaches the jobs in the environment instead
# (workflow/rules/common.smk; alr.model.trainer.report_to); `eval.general_tasks_seeds` becomes each test pass's
# `--general-tasks`.
NOT_PASSED = ("train.report_to", "eval.general_tasks_seeds")
REPORT_TO_ENV = "ALR_REPORT_TO"  # train.report_to as the workflow hands it to every job


def section(cfg: dict, *keys: str) -> dict:
    """The part of a config that `keys` name (what a rule passes to its `alr` command): a top-level
    name takes the whole section, a dotted key (`fisher.samples`) only that value; never a key of
    NOT_PASSED. A key the config lacks is refused with one message naming them all."""
    out: dict = {}
    missing = []
    for key in keys:
        *parents, last = key.split(".")
        src, dst = cfg, out
        for part in parents:
            src = src.get(part) if isinstance(src, dict) else None
            dst = dst.setdefault(part, {}) if isinstance(dst.get(part, {}), dict) else None
            if src is None or dst is None:  # absent, or already taken whole by a shorter key
                break
        else:
            if not isinstance(src, dict) or last not in src:
                missing.append(key)
            elif dst is not None:
                dst[last] = src[last]
            continue
        if src is None:
            missing.append(key)
    if missing:
        raise ConfigError(
            f"the config has no {', '.join(map(repr, missing))}, which this command reads "
            "(config/config.yaml has them all)"
        )
    for key in NOT_PASSED:
        parent, last = key.split(".")
        if isinstance(out.get(parent), dict) and last in out[parent]:
            out[parent] = {k: v for k, v in out[parent].items() if k != last}
    return out


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
    return [
        f"{k}: {a.get(k, '<absent>')!r} in {saved_in}, {b.get(k, '<absent>')!r} now"
        for k in sorted(set(a) | set(b))
        if a.get(k, "<absent>") != b.get(k, "<absent>")
    ]
