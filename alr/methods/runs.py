"""Run names: which directories `results/<model>/<domain>/<run>/seed<N>/` a config expands to.

A method's strength (`Method.strength_key`: `regularize.lambda`, `fisher.lambda`, `kl.weight`,
`baselines.replay_fraction`, `baselines.wise_ft_beta`, or its `settings` section's value, as
`official.regularize.lambda`) is one number or a list. With one value the run is named after its
method (`alr`). With several values the method becomes one run per value, named
`<method>-<tag><value>` with the method's `strength_tag` (`alr-lambda0.5`, `kl_lora-w10`,
`wise_ft-beta0.25`, `replay-frac0.1`); methods without a strength (lora, full_ft, ...) keep one run.
Method names never contain '-', so a run name always parses back unambiguously, and a named value
must be one of the configured grid's. This module is the only reader of run names: `resolve_run`
turns one into a `Run` once, which the workflow, `alr finetune` and `alr evaluate` receive; reports
take a run's method and strength from its records (`recorded_strength`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

from ..core.errors import ConfigError, did_you_mean
from ..core.sections import section
from .registry import BASE, METHODS, Method, get_method

_RUN = re.compile(r"^(?P<method>[a-z0-9_]+?)(?:-(?P<tag>[a-z]+)(?P<value>[0-9][0-9.e+-]*))?$")
RUN_PATTERN = r"[a-z0-9_]+(?:-[a-z]+[0-9][0-9.e+-]*)?"  # the Snakemake wildcard constraint


def _grid(method: str, cfg: dict) -> list:
    """The configured values of a method's strength key, as written (one, or the sweep's list)."""
    value = get_method(method).strength(cfg)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def strengths(method: str, cfg: dict) -> list[float]:
    """The values of a method's strength key (one, or the sweep's list); none without a strength."""
    return [float(v) for v in _grid(method, cfg)]


def format_strength(value: float) -> str:
    """A strength as run names and tables write it (Python's `g`: 6 significant digits)."""
    return format(float(value), "g")


def is_swept(method: str, cfg: dict) -> bool:
    return len(strengths(method, cfg)) > 1


def run_names(method: str, cfg: dict) -> list[str]:
    """The runs one configured method expands to (see the module docstring)."""
    if not is_swept(method, cfg):
        return [method]
    spec = get_method(method)
    names = [f"{method}-{spec.strength_tag}{format_strength(v)}" for v in strengths(method, cfg)]
    twins = sorted({n for n in names if names.count(n) > 1})
    if twins:
        raise ConfigError(
            f"{spec.strength_key} lists values that name the same run ({', '.join(twins)}): "
            "give values that differ within 6 significant digits, each once"
        )
    return names


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
    """`alr-lambda0.5` -> ("alr", 0.5); `lora` -> ("lora", None). The name's value, not yet checked
    against a config (`run_strength` does that). An unknown method or a wrong strength tag raises."""
    m = _RUN.match(run)
    if not m:
        raise ConfigError(
            f"{run!r} is not a method or a sweep run <method>-<tag><value>"
            f"{did_you_mean(run, METHODS)}; methods: {', '.join(METHODS)}"
        )
    spec = get_method(m["method"])
    if m["tag"] is None:
        return spec.name, None
    if spec.strength_key is None:
        raise ConfigError(f"run {run!r}: method {spec.name!r} has no strength to sweep; name the run {spec.name}")
    if m["tag"] != spec.strength_tag:
        raise ConfigError(
            f"run {run!r}: {spec.name}'s strength ({spec.strength_key}) is named "
            f"{spec.name}-{spec.strength_tag}<value>, not -{m['tag']}"
        )
    return spec.name, float(m["value"])


def run_method(run: str) -> str:
    """The registry method of a run (`alr-lambda0.5` -> `alr`)."""
    return parse_run(run)[0]


def recorded_strength(record: dict) -> tuple[str, float | None]:
    """(method, strength value) of a run record (eval.json's or valid.json's `run`). Records written
    before strengths were recorded give the value their run name carries."""
    if "strength" not in record:
        return parse_run(record["run"])
    strength = record["strength"]
    return record["method"], None if strength is None else float(strength["value"])


@dataclass(frozen=True)
class Run:
    """One run of a config, its name parsed and checked against the config once (`resolve_run`): what
    the workflow, `alr finetune` and `alr evaluate` receive."""

    name: str  # as the folders and the workflow's wildcard spell it: `alr-lambda0.5`
    method: Method
    strength: tuple[str, float] | None  # (config key, the run's own value); None for a method without one
    config: dict  # the config it trains with: its method's `settings` merged in, its strength set

    def strength_record(self) -> dict | None:
        """The strength as the run's records keep it: {"key", "value"}, or None without one."""
        return None if self.strength is None else {"key": self.strength[0], "value": self.strength[1]}

    def strength_section(self) -> dict:
        """The part of the run's config that holds its strength (and its copy in the method's `settings`
        section): all `alr evaluate` needs to record the strength, so a sweep point's evaluation reruns
        when its own value changes, not when another point is added."""
        spec = self.method
        if spec.strength_key is None:
            return {}
        out = section(self.config, spec.strength_key)
        if spec.settings:
            held = self.config[spec.settings]
            out[spec.settings] = section(held, spec.strength_key) if spec.strength_key.split(".")[0] in held else {}
        return out


def resolve_run(cfg: dict, name: str) -> Run:
    """The run `name` of config `cfg`. An unknown method, a wrong tag, a value outside the configured
    grid or a config without a key the method reads raises ConfigError."""
    method, named = parse_run(name)
    spec = get_method(method)
    try:
        strength = _strength(spec, name, named, cfg)
        config = _run_config(spec, cfg, strength)
    except KeyError:
        section(cfg, *spec.config_keys)  # a config without a key the method reads: the error names it
        raise
    return Run(name=name, method=spec, strength=strength, config=config)


def _strength(spec: Method, run: str, named: float | None, cfg: dict) -> tuple[str, float] | None:
    """(config key, value) a run trains or evaluates with: the one configured value, or the grid value
    its name gives; None for a method without a strength. A name outside the grid raises."""
    if spec.strength_key is None:
        return None
    values = _grid(spec.name, cfg)
    if named is None:
        if len(values) > 1:
            raise ConfigError(
                f"{spec.strength_key} lists {len(values)} values; name the run "
                f"{spec.name}-{spec.strength_tag}<value> (one of {[format_strength(v) for v in values]})"
            )
        return spec.strength_key, values[0]
    match = [v for v in values if format_strength(v) == format_strength(named)]
    if not match:
        raise ConfigError(
            f"run {run!r}: {format_strength(named)} is not a configured value of {spec.strength_key} "
            f"({', '.join(map(format_strength, values))}); add it to the config or pick one of them"
        )
    return spec.strength_key, match[0]


def _run_config(spec: Method, cfg: dict, strength: tuple[str, float] | None) -> dict:
    """The config one run trains with: its method's `settings` merged in (`Method.effective`), and its
    strength key set to the run's own value (a number from the configured grid)."""
    out = copy.deepcopy(spec.effective(cfg))
    if strength is None:
        return out
    key, value = strength
    *parents, last = key.split(".")
    holder = out
    for part in parents:
        holder = holder[part]
    holder[last] = value
    if spec.settings:  # the settings now hold the sections as merged, so merging them again changes nothing
        out[spec.settings] = {k: copy.deepcopy(out[k]) for k in out[spec.settings]}
    return out
