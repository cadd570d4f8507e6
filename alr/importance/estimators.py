"""Estimator registry: every importance file the pipeline can make, in one table.

Each entry says what the rest of the pipeline reads: the file it writes
(`results/<model>/importance/<name>.safetensors` + `<name>.json`, paths in `alr.core.layout`), the config
keys its recorder reads (the importance rule passes exactly those, and they are its rerun
trigger), whether its tensors are named by module (LoRA-shaped: `...q_proj`, checked against
`lora.targets`) or by parameter (full-model-shaped: `...q_proj.weight`), which config sections a
fine-tune must share with the file (SI: the phase-1 settings), and the function that records it.

`alr importance --estimator NAME` and the one `importance` rule of the workflow serve every entry;
adding an estimator is one `register(Estimator(...))` and its recorder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..config import schema_registry
from ..core.errors import ConfigError, did_you_mean
from ..core.sections import section, with_overrides

SI = "si"  # the paper's estimator (phase 1)
FISHER = "fisher"  # EWC-LoRA's full-model Fisher: the reference of the efficiency comparisons


@dataclass(frozen=True)
class Estimator:
    name: str
    description: str
    keys: tuple[str, ...]  # config keys the recorder reads (a section name: all of it)
    record: Callable  # (cfg, model_dir, data_dir, out_path, seed) -> sidecar
    named_by: str = "module"  # "module": LoRA-shaped, one tensor per adapted module; "parameter"
    shared_sections: tuple[str, ...] = ()  # sections a fine-tune's config must share with the file's
    mem_mb: int = 8000  # memory the workflow reserves for recording it
    keeps_adapter: bool = False  # also writes phase 1's LoRA adapter (alr.core.layout.phase1_adapter)
    seeded: bool = False  # trains from importance.seed; with `seed: run`, one file per phase-2 seed
    settings: str | None = None  # a config section whose sub-sections override the others for this
    # estimator (si_official: `official`, alr.config.with_overrides)

    @property
    def lora_shaped(self) -> bool:
        return self.named_by == "module"

    def seed_per_run(self, cfg: dict) -> bool:
        """Whether each phase-2 seed reads its own file of this estimator (importance.seed: run)."""
        return self.seeded and with_overrides(cfg, self.settings)["importance"]["seed"] == "run"

    def config(self, cfg: dict) -> dict:
        """The config keys its recorder reads: what the importance rule passes (its rerun trigger) and
        the sidecar records. A settings section keeps only the sections the recorder reads, so
        changing `official.regularize` (phase 2) never reruns phase 1."""
        out = section(cfg, *self.keys)
        if self.settings:
            read = {k.split(".")[0] for k in self.keys}
            out[self.settings] = {k: v for k, v in out[self.settings].items() if k in read}
        return out


# The recorders (alr.importance.record) import torch and transformers: imported when one runs, so
# reading the registry (the workflow, `alr --help`) stays light.
def _si(name, settings=None):
    def record(cfg, model_dir, data_dir, out, seed):
        from .record import record_importance

        return record_importance(with_overrides(cfg, settings), model_dir, data_dir, out, ESTIMATORS[name], seed)

    return record


def _fisher(name, scope):
    def record(cfg, model_dir, data_dir, out, seed):
        from .record import record_fisher

        return record_fisher(cfg, model_dir, data_dir, out, ESTIMATORS[name], scope)

    return record


def _mas(cfg, model_dir, data_dir, out, seed):
    from .record import record_mas

    return record_mas(cfg, model_dir, data_dir, out, ESTIMATORS["mas"])


# the Fisher's recorder reads neither fisher.lambda nor fisher.normalize (ewc_lora's phase 2 does)
FISHER_KEYS = ("model", "lora.targets", "fisher.samples", "fisher.max_length", "fisher.dtype")
ESTIMATORS: dict[str, Estimator] = {}
schema_registry("estimators", ESTIMATORS)


def register(estimator: Estimator) -> Estimator:
    """Add an estimator (plugins too: see `alr.methods.registry`); names are unique."""
    if estimator.name in ESTIMATORS:
        raise ValueError(f"estimator {estimator.name!r} is already registered")
    ESTIMATORS[estimator.name] = estimator
    return estimator


for _e in (
    Estimator(
        SI,
        "phase 1: Synaptic Intelligence path integral on each adapted module's dense weight, from "
        "LoRA tuning on general text (also keeps phase 1's adapter)",
        ("model", "lora", "train", "importance"),
        _si(SI),
        shared_sections=("importance",),
        keeps_adapter=True,
        seeded=True,
    ),
    Estimator(
        "si_official",
        "si with the authors' code settings: `official.importance` over `importance` "
        "(their u gradient, running clamp, per-epoch sums)",
        ("model", "lora", "train", "importance", "official"),
        _si("si_official", "official"),
        shared_sections=("importance",),
        keeps_adapter=True,
        seeded=True,
        settings="official",
    ),
    Estimator(
        "si_full",
        "SI of every parameter from a full fine-tuning phase 1 (alr_full)",
        ("model", "train", "importance", "baselines"),
        _si("si_full"),
        named_by="parameter",
        shared_sections=("importance",),
        mem_mb=12000,
        seeded=True,
    ),
    Estimator(
        FISHER,
        "per-sample empirical Fisher over every parameter (EWC-LoRA, as the original)",
        FISHER_KEYS,
        _fisher(FISHER, "full"),
        named_by="parameter",
    ),
    Estimator(
        "fisher_adapted",
        "the same Fisher, adapted modules only (efficiency table)",
        FISHER_KEYS,
        _fisher("fisher_adapted", "adapted"),
        named_by="parameter",
    ),
    Estimator(
        "mas", "MAS: |d mean_t ||logits_t||^2 / dW| per sample, on the adapted modules", ("model", "lora", "mas"), _mas
    ),
):
    register(_e)


def get_estimator(name: str) -> Estimator:
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise ConfigError(
            f"unknown importance estimator {name!r}{did_you_mean(name, ESTIMATORS)}; known: {', '.join(ESTIMATORS)}"
        ) from None
