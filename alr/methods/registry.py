"""Method registry: everything a method name in the config means, in one entry.

The rest of the pipeline reads a method only through its entry: the workflow (which inputs a run
needs, which config sections it is passed, how evaluation rescales its weights, which tables and
figures it joins), `alr finetune` (adapter, learning rate, importance, penalty, data mixing, an extra
loss term), the run names of a sweep (`alr.methods.runs`), the ablation table and the config schema (its
list of methods comes from here). Adding a baseline is one `register(Method(...))` plus its loss or
penalty code.

Plugins: `ALR_PLUGINS=pkg.module[,other.module]` names modules that `alr.plugins.load_plugins`
imports in every process of a run (the workflow and each `alr` command); a plugin calls `register`
here and `alr.importance.estimators.register` to add methods and estimators without editing alr.
Registration checks the entry: its estimator must be registered and every config key it names must
exist in the config schema, so a misspelt name fails when the module is imported, not mid-run.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..config import schema_has_key, schema_registry
from ..core.errors import ConfigError, did_you_mean
from ..core.layout import GENERAL_TEXT
from ..core.sections import with_overrides
from ..importance.estimators import ESTIMATORS
from .hooks import HookContext, LossHook
from .kl import kl_hook

BASE = "base"  # the untouched model: the reference row of every table
ELEMENTS = ("importance", "layer_mean", "shuffled")  # Method.elements (alr.methods.penalty.ELEMENT_TRANSFORMS)
PLAIN = "lora"  # plain LoRA: the reference line of the sweep figure
EWC = "ewc_lora"  # EWC-LoRA: the reference of the training-time comparison
LORA = "lora"  # Method.adapter: PEFT LoRA
# how every LoRA method starts phase 2 (a fresh adapter or phase 1's, and its optimizer state)
PHASE2_START_KEYS = ("regularize.phase2_init", "regularize.phase2_optimizer")
# the penalty's shape, read by every regularised method (its weight and normalisation are per method)
PENALTY_KEYS = tuple(
    f"regularize.{k}" for k in ("granularity", "layer_coef", "layer_norm", "layer_scale", "tau", "uniform_coef")
)


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    trains: bool = True  # False: nothing to tune (the base model; wise_ft reuses lora's weights)
    adapter: str | None = LORA  # LORA: PEFT LoRA on `lora.targets`; None: every parameter trains
    importance: str | None = None  # an estimator of alr.importance.estimators (its file), "uniform" (ones) or
    # None (no penalty)
    elements: str = "importance"  # importance: as estimated | layer_mean: each layer's importance replaced by
    # its mean | shuffled: permuted within each module with the run's seed
    # (same values, norms and layer coefficients; the element pattern destroyed)
    layer_coef: str = "config"  # "config": regularize.layer_coef; or a fixed mode ("uniform", "sum")
    strength_key: str | None = None  # the one setting that weighs what it adds to LoRA, swept as
    # <method>-<strength_tag><value> when it holds a list (alr.methods.runs). Default: the
    # penalty weight regularize.lambda with an importance, else replay_key,
    # else delta_scale_key; None left: no strength
    strength_tag: str | None = None  # the strength's name in sweep run names (`kl_lora-w10`); default:
    # lambda for a penalty weight, frac for a replay fraction, beta for a delta scale, else s
    lr_key: str = "train.lr"  # the learning rate it trains with (full fine-tuning: baselines.full_ft_lr)
    weights_from: str | None = None  # evaluate another method's weights (WiSE-FT: lora's adapter)
    delta_scale_key: str | None = None  # evaluate base + value * (tuned - base) (WiSE-FT: baselines.wise_ft_beta)
    replay_key: str | None = None  # mix this fraction of general train items into the domain data
    ablation: tuple[bool, bool] | None = None  # its row of the ablation table: (layer-wise, element-wise)
    loss_hook: Callable[[HookContext], LossHook] | None = None  # a factory: called once per run with its
    # HookContext, it returns hook(model, inputs, outputs) -> tensor, whose value
    # is added to every training micro-batch's loss (alr.model.trainer)
    hook_sections: tuple[str, ...] = ()  # config sections the loss hook reads
    hook_data: tuple[str, ...] = ()  # datasets whose train split the loss hook reads (`<data_dir>/<name>/
    # train.jsonl`): inputs of its finetune job, part of its checkpoint identity
    normalize_key: str | None = "regularize.normalize"  # how its importance is transformed before the penalty
    # (alr.methods.penalty.NORMALIZATIONS: none | mean | int8_rows); None: untouched
    settings: str | None = (
        None  # a section overriding importance/regularize for this method (alr.config.with_overrides)
    )
    phase2_init: str | None = None  # "phase1": always continue a phase-1 adapter; None: regularize.phase2_init
    phase1: str | None = None  # the estimator whose phase-1 adapter it continues (None: its own if that keeps
    # one, else si)

    def __post_init__(self):
        if self.strength_key is None:
            default = "regularize.lambda" if self.importance is not None else self.replay_key or self.delta_scale_key
            object.__setattr__(self, "strength_key", default)
        if self.strength_tag is None and self.strength_key is not None:
            tags = {self.replay_key: "frac", self.delta_scale_key: "beta"}
            tag = "lambda" if self.strength_key.endswith(".lambda") else tags.get(self.strength_key, "s")
            object.__setattr__(self, "strength_tag", tag)

    @property
    def uses_lora(self) -> bool:
        return self.adapter == LORA

    @property
    def regularised(self) -> bool:
        return self.importance is not None

    @property
    def estimator(self):
        """The importance estimator whose file this method reads (`--importance`), or None."""
        return ESTIMATORS.get(self.importance) if self.importance else None

    @property
    def config_keys(self) -> tuple[str, ...]:
        """Every config key `alr finetune` reads for this method (a section name: all of it), and only
        those: the finetune rule passes them (so editing a setting this method does not read reruns
        nothing here), and `train.json` and the checkpoint identity record them (so a changed value is
        visible and never resumed across)."""
        keys = ["model", "train", self.lr_key]
        if self.uses_lora:
            keys += ["lora", *PHASE2_START_KEYS]
        if self.regularised:
            keys += PENALTY_KEYS
        keys += [k for k in (self.strength_key, self.normalize_key if self.regularised else None) if k]
        if self.estimator:
            keys += self.estimator.shared_sections  # the settings its importance file must have been made with
        if self.replay_key:
            keys.append("data")  # the general tasks whose items are mixed in
        keys += self.hook_sections
        if self.settings:
            keys.append(self.settings)
        return tuple(k for k in dict.fromkeys(keys) if k.split(".")[0] == k or k.split(".")[0] not in keys)

    def effective(self, cfg: dict) -> dict:
        """The config this method runs with: its `settings` section merged over the others (idempotent)."""
        return with_overrides(cfg, self.settings)

    def strength(self, cfg: dict):
        """The value of its strength key (a number, or a sweep's list), or None without one."""
        return setting(self.effective(cfg), self.strength_key) if self.strength_key else None

    def normalization(self, cfg: dict) -> str:
        return setting(self.effective(cfg), self.normalize_key) if self.normalize_key else "none"

    def learning_rate(self, cfg: dict) -> float:
        return setting(cfg, self.lr_key)

    def delta_scale(self, cfg: dict) -> float:
        return setting(cfg, self.delta_scale_key) if self.delta_scale_key else 1.0

    def replay_fraction(self, cfg: dict) -> float | None:
        return setting(cfg, self.replay_key) if self.replay_key else None

    def continues_phase1(self, cfg: dict) -> bool:
        """With `regularize.phase2_init: phase1` every LoRA method continues phase 1's adapter (and the
        `*_phase1` / `*_official` warm starts always do)."""
        if not self.uses_lora:
            return False  # full fine-tuning has no adapter to continue (and reads no `regularize`)
        return (self.phase2_init or self.effective(cfg)["regularize"]["phase2_init"]) == "phase1"

    def continues_phase1_optimizer(self, cfg: dict) -> bool:
        """It continues phase 1's adapter and, with `regularize.phase2_optimizer: phase1`, its AdamW state."""
        return self.continues_phase1(cfg) and self.effective(cfg)["regularize"]["phase2_optimizer"] == "phase1"

    @property
    def phase1_estimator(self) -> str:
        """The estimator whose phase-1 adapter it continues: `phase1`, else its own estimator if that
        keeps one, else `si`."""
        est = self.estimator
        return self.phase1 or (est.name if est is not None and est.keeps_adapter else "si")


def setting(cfg: dict, key: str):
    """The value of a dotted config key (`baselines.full_ft_lr`)."""
    value = cfg
    for part in key.split("."):
        value = value[part]
    return value


METHODS: dict[str, Method] = {}
schema_registry("methods", METHODS)
UNIFORM = "uniform"  # Method.importance without an estimator: ones (plain L2 on the update)


def _entry_problems(method: Method) -> list[str]:
    """What is wrong with a method entry: unknown names of estimators, methods or config keys."""
    problems = []
    if not re.fullmatch(r"[a-z0-9_]+", method.name):
        problems.append("use lowercase letters, digits and '_' only in its name")
    if method.strength_tag is not None and not re.fullmatch("[a-z]+", method.strength_tag):
        problems.append(f"strength_tag={method.strength_tag!r}: use lowercase letters only (run names parse it)")
    if method.elements not in ELEMENTS:
        problems.append(f"elements must be one of {ELEMENTS}, got {method.elements!r}")
    for field in ("importance", "phase1"):
        name = getattr(method, field)
        if name not in (None, UNIFORM if field == "importance" else None) and name not in ESTIMATORS:
            problems.append(f"{field}={name!r} is no registered estimator{did_you_mean(name, ESTIMATORS)}")
    if method.weights_from is not None and method.weights_from not in METHODS:
        problems.append(f"weights_from={method.weights_from!r} is no registered method")
    keys = {f: getattr(method, f) for f in ("strength_key", "lr_key", "delta_scale_key", "replay_key", "normalize_key")}
    keys.update({f"hook_sections[{i}]": k for i, k in enumerate(method.hook_sections)}, settings=method.settings)
    problems += [
        f"{field}={key!r} is no config key of the schema"
        for field, key in keys.items()
        if key is not None and not schema_has_key(key)
    ]
    return problems


def register(method: Method) -> Method:
    """Add a method after checking its entry (names are unique, lowercase letters, digits and '_', as
    run names need; estimators, methods and config keys it names exist)."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    problems = _entry_problems(method)
    if problems:
        raise ValueError(f"method {method.name!r}: " + "; ".join(problems))
    METHODS[method.name] = method
    return method


for _m in (
    Method(BASE, "no tuning; the reference row", trains=False, adapter=None),
    Method(PLAIN, "plain LoRA on the domain (PEFT)", ablation=(False, False)),
    Method(
        "alr",
        "LoRA + element-wise SI importance + layer-wise coefficients (the paper)",
        importance="si",
        ablation=(True, True),
    ),
    Method(
        "alr_no_layer",
        "alr with uniform layer coefficients (element-wise only)",
        importance="si",
        layer_coef="uniform",
        ablation=(False, True),
    ),
    Method(
        "alr_no_element",
        "alr with each layer's importance replaced by its mean (layer-wise only)",
        importance="si",
        elements="layer_mean",
        ablation=(True, False),
    ),
    Method(
        "alr_shuffled",
        "alr with the importance permuted within each module: the element-wise control "
        "(same norms and layer coefficients, no element pattern)",
        importance="si",
        elements="shuffled",
    ),
    Method("l2_lora", "LoRA + uniform importance: plain L2 on the update", importance="uniform", layer_coef="uniform"),
    Method(
        "alr_official",
        "alr as the authors' code runs it: `official` over importance/regularize (their u "
        "gradient, running clamp, per-epoch sums, softmax(1e-8 * norm), lambda 1e-3 on the raw importance, "
        "phase 2 continuing phase 1's adapter and AdamW state)",
        importance="si_official",
        settings="official",
    ),
    Method(
        "alr_official_no_layer",
        "alr_official with the authors' fixed layer coefficient (1/blocks)",
        importance="si_official",
        layer_coef="uniform",
        settings="official",
    ),
    Method(
        "lora_phase1",
        "plain LoRA continuing si's phase-1 adapter, no penalty: the warm start alone",
        phase2_init="phase1",
    ),
    Method(
        "lora_official",
        "alr_official without its penalty: the authors' warm start (si_official's adapter and AdamW state) alone",
        settings="official",
        phase1="si_official",
    ),
    Method(
        EWC,
        "LoRA + EWC penalty from a per-sample diagonal Fisher over the whole model, as the "
        "original used it (fisher.normalize: int8_rows by default)",
        importance="fisher",
        layer_coef="sum",
        strength_key="fisher.lambda",
        normalize_key="fisher.normalize",
    ),
    Method(
        "ewc_lora_raw",
        "ewc_lora on the raw Fisher (no row rescaling): the penalty before this was fixed",
        importance="fisher",
        layer_coef="sum",
        strength_key="fisher.lambda",
        normalize_key=None,
    ),
    Method(
        "full_ft",
        "full fine-tuning on the domain (every parameter, baselines.full_ft_lr)",
        adapter=None,
        lr_key="baselines.full_ft_lr",
    ),
    Method("mas_lora", "alr with MAS importance instead of SI", importance="mas"),
    Method(
        "wise_ft",
        "lora's adapter scaled by baselines.wise_ft_beta toward the base at evaluation",
        trains=False,
        weights_from=PLAIN,
        delta_scale_key="baselines.wise_ft_beta",
    ),
    Method(
        "replay",
        "LoRA on domain data mixed with a fraction of general examples",
        replay_key="baselines.replay_fraction",
    ),
    Method(
        "alr_full",
        "alr on full fine-tuning: SI importance of every parameter from a full phase 1",
        adapter=None,
        importance="si_full",
        lr_key="baselines.full_ft_lr",
    ),
    Method(
        "kl_lora",
        "LoRA + kl.weight x KL(base || tuned) of next-token distributions on general-text batches "
        "(LwF / self-distillation to the base model)",
        loss_hook=kl_hook,
        hook_sections=("kl",),
        hook_data=(GENERAL_TEXT,),
        strength_key="kl.weight",
        strength_tag="w",
    ),
):
    register(_m)


def estimator_users(estimator: str) -> list[str]:
    """The methods that read an estimator's file, in registry order."""
    return [name for name, m in METHODS.items() if m.importance == estimator]


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(
            f"unknown method {name!r}{did_you_mean(name, METHODS)}; known: {', '.join(METHODS)}"
        ) from None
