"""Run names: which directories `results/<model>/<domain>/<run>/seed<N>/` a config expands to.

A method's strength (`Method.strength_key`: `regularize.lambda`, `fisher.lambda`, `kl.weight`,
`baselines.replay_fraction`, `baselines.wise_ft_beta`, or its `settings` section's value, as
`official.regularize.lambda`) is one number or a list. With one value the run is named after its
method (`alr`). With several values the method becomes one run per value, named
`<method>-lambda<value>` (`alr-lambda0.5`, `ewc_lora-lambda50`, `wise_ft-lambda0.25`); methods
without a strength (lora, full_ft, ...) keep one run. Method names never contain '-', so a run name
always parses back unambiguously.
"""

from __future__ import annotations

import copy
import re

from .errors import ConfigError
from .methods import BASE, get_method

_RUN = re.compile(r"^(?P<method>[a-z0-9_]+?)(?:-lambda(?P<lam>[0-9][0-9.e+-]*))?$")
RUN_PATTERN = r"[a-z0-9_]+(?:-lambda[0-9][0-9.e+-]*)?"  # the Snakemake wildcard constraint


def strengths(method: str, cfg: dict) -> list[float]:
    """The values of a method's strength key (one, or the sweep's list); none without a strength."""
    value = get_method(method).strength(cfg)
    if value is None:
        return []
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]


def format_lambda(value: float) -> str:
    return format(float(value), "g")


def is_swept(method: str, cfg: dict) -> bool:
    return len(strengths(method, cfg)) > 1


def run_names(method: str, cfg: dict) -> list[str]:
    """The runs one configured method expands to (see the module docstring)."""
    if is_swept(method, cfg):
        return [f"{method}-lambda{format_lambda(v)}" for v in strengths(method, cfg)]
    return [method]


def all_runs(cfg: dict) -> list[str]:
    """Every run of the configured methods except `base`, in config order."""
    return [run for m in cfg["methods"] if m != BASE for run in run_names(m, cfg)]


def run_order(methods: list[str], runs) -> list[str]:
    """`runs` in the order of their methods in `methods`, each sweep by increasing strength."""

    def key(run):
        method, lam = parse_run(run)
        return (methods.index(method) if method in methods else len(methods), -1.0 if lam is None else lam, run)

    return sorted(runs, key=key)


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
        from .errors import did_you_mean
        from .methods import METHODS

        raise ConfigError(
            f"{run!r} is not a method or a sweep run <method>-lambda<value>"
            f"{did_you_mean(run, METHODS)}; methods: {', '.join(METHODS)}"
        )
    get_method(m["method"])
    return m["method"], (float(m["lam"]) if m["lam"] is not None else None)


def run_config(cfg: dict, run: str) -> dict:
    """The config one run trains with: its method's `settings` merged in (`Method.effective`), and its
    strength key set to the run's own value (a number)."""
    method, lam = parse_run(run)
    spec = get_method(method)
    out = copy.deepcopy(spec.effective(cfg))
    if spec.strength_key is None:
        if lam is not None:
            raise ConfigError(f"run {run!r}: method {method!r} has no strength to sweep; name the run {method}")
        return out
    values = strengths(method, out)
    if lam is None:
        if len(values) > 1:
            raise ConfigError(
                f"{spec.strength_key} lists {len(values)} values; name the run "
                f"{method}-lambda<value> (one of {[format_lambda(v) for v in values]})"
            )
        lam = values[0]
    *parents, last = spec.strength_key.split(".")
    holder = out
    for part in parents:
        holder = holder[part]
    holder[last] = lam
    if spec.settings:  # the settings now hold the sections as merged, so merging them again changes nothing
        out[spec.settings] = {k: copy.deepcopy(out[k]) for k in out[spec.settings]}
    return out
