"""Run names: which directories `results/<model>/<domain>/<run>/seed<N>/` a config expands to.

`regularize.lambda` is one number or a list. With one value every run is named after its method
(`alr`), as before. With several values, each method whose penalty uses `regularize.lambda` (alr,
its ablations, l2_lora, mas_lora, alr_full) becomes one run per value, named `<method>-lambda<value>`
(`alr-lambda0.5`, `alr-lambda2`); methods without that penalty (lora, full_ft, ewc_lora, ...) keep
one run. Method names never contain '-', so a run name always parses back unambiguously.
"""
from __future__ import annotations

import copy
import re

from .methods import BASE, get_method

_RUN = re.compile(r"^(?P<method>[a-z0-9_]+?)(?:-lambda(?P<lam>[0-9][0-9.e+-]*))?$")
RUN_PATTERN = r"[a-z0-9_]+(?:-lambda[0-9][0-9.e+-]*)?"  # the Snakemake wildcard constraint


def lambdas(cfg: dict) -> list[float]:
    value = cfg["regularize"]["lambda"]
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]


def format_lambda(value: float) -> str:
    return format(float(value), "g")


def is_swept(method: str, cfg: dict) -> bool:
    spec = get_method(method)
    return spec.regularised and spec.strength_key == "regularize.lambda" and len(lambdas(cfg)) > 1


def run_names(method: str, cfg: dict) -> list[str]:
    """The runs one configured method expands to (see the module docstring)."""
    if is_swept(method, cfg):
        return [f"{method}-lambda{format_lambda(v)}" for v in lambdas(cfg)]
    return [method]


def all_runs(cfg: dict) -> list[str]:
    """Every run of the configured methods except `base`, in config order."""
    return [run for m in cfg["methods"] if m != BASE for run in run_names(m, cfg)]


def run_domains(run: str, cfg: dict) -> list[str]:
    """The domains a run is made on: `method_domains[method]` if given, else every configured domain."""
    method = parse_run(run)[0]
    restricted = cfg.get("method_domains", {}).get(method)
    return [d for d in cfg["domains"] if restricted is None or d in restricted]


def domain_runs(cfg: dict, runs: list[str] | None = None) -> list[tuple[str, str]]:
    """(domain, run) pairs to make, in config order, honouring `method_domains`."""
    runs = all_runs(cfg) if runs is None else runs
    return [(d, r) for r in runs for d in run_domains(r, cfg)]


def parse_run(run: str) -> tuple[str, float | None]:
    """`alr-lambda0.5` -> ("alr", 0.5); `lora` -> ("lora", None). Unknown methods raise ValueError."""
    m = _RUN.match(run)
    if not m:
        from .config import did_you_mean
        from .methods import METHODS

        raise ValueError(f"{run!r} is not a method or a sweep run <method>-lambda<value>"
                         f"{did_you_mean(run, METHODS)}; methods: {', '.join(METHODS)}")
    get_method(m["method"])
    return m["method"], (float(m["lam"]) if m["lam"] is not None else None)


def run_config(cfg: dict, run: str) -> dict:
    """The config one run trains with: `regularize.lambda` is the run's own value (a number)."""
    method, lam = parse_run(run)
    out = copy.deepcopy(cfg)
    if "regularize" not in out:
        return out
    values = lambdas(out)
    if lam is None:
        if len(values) > 1 and is_swept(method, out):
            raise ValueError(f"regularize.lambda lists {len(values)} values; name the run "
                             f"{method}-lambda<value> (one of {[format_lambda(v) for v in values]})")
        lam = values[0]
    out["regularize"]["lambda"] = lam
    return out
