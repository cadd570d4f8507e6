"""The recorders of the estimators in `alr.importance.estimators`, each on general text, each writing
one importance file + sidecar:

    alr importance --estimator si --config C --model-dir M --data-dir D --out results/<m>/importance/si.safetensors
    (si_full: every parameter, for alr_full; fisher / fisher_adapted: EWC-LoRA; mas: MAS)
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch

from ..assets.model import check_lora_targets, check_model_dir
from ..core.dist import is_main_process
from ..core.errors import ConfigError
from ..core.examples import read_records, tokenize_texts
from ..core.io import atomic_dir, check_replaceable
from ..core.layout import GENERAL_TEXT, OPTIMIZER_STATE, phase1_adapter, training_tracking
from ..core.measure import Timer, peak_mem_mb, provenance, reset_peak_memory
from ..model.load import load_base, name_hub_base, wrap_lora
from ..model.trainer import run_trainer, training_arguments
from .si import SIRecorder, si_callback
from .store import model_fingerprint, save_importance

log = logging.getLogger(__name__)
KIND = "importance"  # what the phase-1 adapter folder's ownership record names (alr.core.io.atomic_dir)


def _general_text(data_dir: str | Path, n: int) -> list[dict]:
    return read_records(Path(data_dir) / GENERAL_TEXT / "train.jsonl", "text")[:n]


TIMED_SPAN = "tokenized texts in, importance tensors in memory out (model loading and file writing excluded)"


def _sidecar(estimator, cfg: dict, model_dir, features: list[dict], wall_time_s: float, **extra) -> dict:
    """The sidecar fields every estimator shares (save_importance adds bytes, dtype, targets); its
    config is exactly the sections the estimator (an `alr.importance.estimators.Estimator`) reads."""
    config = estimator.config(cfg)
    return {
        "estimator": estimator.name,
        "model": cfg["model"]["name"],
        "fingerprint": model_fingerprint(model_dir),
        "n_samples": len(features),
        "n_tokens": sum(len(f["input_ids"]) for f in features),
        "steps": len(features),
        "wall_time_s": round(wall_time_s, 3),
        "timed_span": TIMED_SPAN,
        "peak_mem_mb": peak_mem_mb(),
        "nonnegative": True,  # squares (Fisher), absolute values (MAS), clamped SI
        **extra,
        "config": config,
        "provenance": provenance(config),
    }


def phase1_seed(seed: int, stream: str) -> int:
    """The torch seed of phase 1. `separate`: derived from `importance.seed` by a hash, so phase 1
    never draws the LoRA initialisation (or dropout masks, data order) of a phase-2 seed, whose
    seeds are used as they are; `shared`: the seed itself, so phase 1 and the phase-2 run of the same
    seed start from the same LoRA A (the authors' code shares more: its phase 2 continues phase 1)."""
    if stream == "shared":
        return seed
    if stream != "separate":
        raise ValueError(f"importance.seed_stream must be 'separate' or 'shared', got {stream!r}")
    import hashlib

    return int.from_bytes(hashlib.sha256(f"alr-phase1:{seed}".encode()).digest()[:4], "big") >> 1


def _final_optimizer_state():
    """A callback keeping the optimizer's state dict at the end of training (phase 2 may continue it)."""
    from transformers import TrainerCallback

    class KeepOptimizerState(TrainerCallback):
        state = None

        def on_train_end(self, args, state, control, optimizer=None, **kwargs):
            self.state = optimizer.state_dict() if optimizer is not None else None

    return KeepOptimizerState()


def _si_recorder(cfg: dict, model, full: bool):
    """(the model to tune, its SIRecorder, phase 1's training settings): LoRA on `lora.targets`, or
    every parameter (`full`, si_full)."""
    imp_cfg, train_cfg = cfg["importance"], cfg["train"]
    switches = dict(xi=imp_cfg["xi"], clamp=imp_cfg["clamp"], accumulate=imp_cfg["accumulate"])
    if full:
        train_cfg = dict(train_cfg, lr=cfg["baselines"]["full_ft_lr"])
        if imp_cfg["gradient"] != "dense":
            raise ConfigError(
                f"importance.gradient {imp_cfg['gradient']!r} needs LoRA factors; si_full records "
                "every parameter: use importance.gradient: dense"
            )
        recorder = SIRecorder.for_parameters(model.named_parameters(), **switches)
    else:
        model = wrap_lora(model, cfg["lora"])
        recorder = SIRecorder.for_lora(model, gradient=imp_cfg["gradient"], **switches)
    # null: as `train`; importance.lr is LoRA's phase-1 rate, si_full keeps baselines.full_ft_lr
    phase1 = {"lr": None if full else imp_cfg["lr"], "max_grad_norm": imp_cfg["max_grad_norm"]}
    return model, recorder, dict(train_cfg, **{k: v for k, v in phase1.items() if v is not None})


def _save_phase1_adapter(model, optimizer_state, out_path, model_dir) -> None:
    """Phase 1's adapter and its final AdamW state, beside the importance file (alr.core.layout)."""
    name_hub_base(model, model_dir)
    with atomic_dir(phase1_adapter(out_path), KIND) as tmp:
        model.save_pretrained(tmp)
        torch.save(optimizer_state, Path(tmp) / OPTIMIZER_STATE)


def _si_sidecar(
    estimator,
    cfg: dict,
    model_dir,
    features: list[dict],
    stats: dict,
    recorder: SIRecorder,
    seed: int,
    torch_seed: int,
    seconds: float,
) -> dict:
    """The sidecar of an SI recording run, from the trainer's `stats`; `seconds` over the timed span (the
    Trainer's set-up, training and the importance's extraction)."""
    sidecar = _sidecar(
        estimator,
        cfg,
        model_dir,
        features,
        seconds,
        final_ce=stats["final_ce"],
        nonnegative=cfg["importance"]["clamp"] != "none",
        seed=seed,
        torch_seed=torch_seed,
        epoch_terms=recorder.epoch_terms,
    )
    # a training run: its own token count and optimizer steps, and the trainer's peak memory
    sidecar.update(n_tokens=stats["tokens"], steps=stats["steps"], peak_mem_mb=stats["peak_mem_mb"])
    return sidecar


def record_importance(
    cfg: dict, model_dir: str | Path, data_dir: str | Path, out_path: str | Path, estimator, seed: int | None = None
) -> dict:
    """Phase 1: tune on general text while recording SI importance; write the importance file.

    A LoRA-shaped `estimator` (si) records each adapted module's dense weight (phase 1's adapter and
    its AdamW state are kept beside the file, `alr.core.layout.phase1_adapter`); a parameter-shaped one
    (si_full) fine-tunes every parameter (lr from baselines.full_ft_lr) for `alr_full`. `seed` (default
    `importance.seed`) goes through `phase1_seed`. No checkpoints: the SI path integral accumulates
    over every step, and phase 1 is short, so a killed run restarts from scratch (same seed, same
    bytes). An existing adapter folder is replaced only when empty or this command's earlier output."""
    imp_cfg = cfg["importance"]
    seed = imp_cfg["seed"] if seed is None else seed
    if not isinstance(seed, int):
        raise ConfigError(
            f"importance.seed is {seed!r}: each phase-2 seed reads its own phase 1, so name it: "
            "alr importance --seed N (the workflow does)"
        )
    full = not estimator.lora_shaped
    from transformers import set_seed

    check_model_dir(model_dir)
    if not full:
        check_lora_targets(model_dir, cfg["lora"]["targets"])
        check_replaceable(phase1_adapter(out_path), KIND)
    rows = _general_text(data_dir, imp_cfg["samples"])
    torch_seed = phase1_seed(seed, imp_cfg["seed_stream"])
    set_seed(torch_seed)
    model, tok = load_base(model_dir, cfg["model"]["dtype"])
    model, recorder, train_cfg = _si_recorder(cfg, model, full)
    features = tokenize_texts((r["text"] for r in rows), tok, train_cfg["max_length"])
    stats, importance, optimizer_state, seconds = _phase1(
        model, tok, features, recorder, train_cfg, imp_cfg, torch_seed, out_path
    )
    recorder.close()
    sidecar = _si_sidecar(estimator, cfg, model_dir, features, stats, recorder, seed, torch_seed, seconds)
    if not is_main_process():  # under DDP every rank holds the same importance; rank 0 writes it
        return sidecar
    if not full:  # first: the importance file, written last, marks the phase as complete
        _save_phase1_adapter(model, optimizer_state, out_path, model_dir)
    sidecar = save_importance(out_path, importance, sidecar, imp_cfg["dtype"])
    log.info(
        "SI importance over %d modules from %d samples, %d steps in %.1f s -> %s (%d bytes)",
        len(importance),
        len(features),
        stats["steps"],
        stats["wall_time_s"],
        out_path,
        sidecar["bytes"],
    )
    return sidecar


def _phase1(model, tok, features, recorder, train_cfg: dict, imp_cfg: dict, torch_seed: int, out_path):
    """Phase-1 training with the SI recorder: (trainer stats, importance, final optimizer state, seconds over
    the span every estimator is timed over: tokenized texts in, importance in memory out)."""
    keep_optimizer = _final_optimizer_state()
    with tempfile.TemporaryDirectory(prefix="alr-trainer-") as scratch:
        args = training_arguments(
            train_cfg,
            torch_seed,
            scratch,
            epochs=imp_cfg["epochs"],
            max_steps=imp_cfg["max_steps"],
            tracking=training_tracking(out_path),
        )
        with Timer() as timer:
            stats = run_trainer(model, tok, features, args, callbacks=[si_callback(recorder), keep_optimizer])
            importance = recorder.importance()
    return stats, importance, keep_optimizer.state, timer.seconds


def record_fisher(
    cfg: dict, model_dir: str | Path, data_dir: str | Path, out_path: str | Path, estimator, scope: str = "full"
) -> dict:
    """The EWC-LoRA baseline's importance: per-sample empirical Fisher on general text, over every
    parameter (`scope="full"`, as the original) or the adapted modules only (`"adapted"`)."""
    from .fisher import empirical_fisher

    f_cfg = cfg["fisher"]
    if scope not in ("full", "adapted"):
        raise ValueError(f"Fisher scope must be 'full' or 'adapted', got {scope!r}")
    check_lora_targets(model_dir, cfg["lora"]["targets"])
    rows = _general_text(data_dir, f_cfg["samples"])
    model, tok = load_base(model_dir, cfg["model"]["dtype"])
    features = tokenize_texts((r["text"] for r in rows), tok, f_cfg["max_length"])
    targets = {f"{n}.weight" for n in _adapted_module_names(model, cfg["lora"]["targets"])}
    keep = None if scope == "full" else targets.__contains__
    reset_peak_memory()
    with Timer() as timer:
        fisher = empirical_fisher(model, features, keep, next(model.parameters()).device)
    sidecar = _sidecar(estimator, cfg, model_dir, features, timer.seconds, per_sample=True, scope=scope)
    sidecar = save_importance(out_path, fisher, sidecar, f_cfg["dtype"])
    log.info(
        "Fisher over %d tensors from %d samples in %.1f s -> %s (%d bytes)",
        len(fisher),
        len(features),
        timer.seconds,
        out_path,
        sidecar["bytes"],
    )
    return sidecar


def record_mas(cfg: dict, model_dir: str | Path, data_dir: str | Path, out_path: str | Path, estimator) -> dict:
    """MAS importance on the adapted modules' dense weights from general text (no labels, no steps)."""
    from .mas import mas_importance

    m_cfg = cfg["mas"]
    check_lora_targets(model_dir, cfg["lora"]["targets"])
    rows = _general_text(data_dir, m_cfg["samples"])
    model, tok = load_base(model_dir, cfg["model"]["dtype"])
    model = wrap_lora(model, cfg["lora"])
    features = tokenize_texts((r["text"] for r in rows), tok, m_cfg["max_length"])
    reset_peak_memory()
    with Timer() as timer:
        importance = mas_importance(model, features)
    sidecar = _sidecar(
        estimator,
        cfg,
        model_dir,
        features,
        timer.seconds,
        output="mean over positions of the squared L2 norm of the logits",
    )
    return save_importance(out_path, importance, sidecar, m_cfg["dtype"])


def _adapted_module_names(model, targets: list[str]) -> list[str]:
    """Names of the modules LoRA would adapt (PEFT's suffix matching on module names)."""
    return [
        n
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and any(n == t or n.endswith("." + t) for t in targets)
    ]
