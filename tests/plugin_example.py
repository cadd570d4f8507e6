"""A throwaway method and estimator, registered as a user's plugin would register them
(`ALR_PLUGINS=tests.plugin_example`), with no other change to alr: tests/test_registry.py runs them
through `snakemake` on the tiny configuration.

- estimator `ones`: importance 1 for every weight of the adapted modules (an L2 penalty), recorded
  without training;
- method `ones_lora`: LoRA with the `ones` importance, plus a loss hook on the batch (a small
  penalty on the logits' mean square), built by its factory from the run's HookContext.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from alr.assets.model import adaptable_module_names
from alr.core.sections import section
from alr.importance.estimators import Estimator
from alr.importance.estimators import register as register_estimator
from alr.importance.store import model_fingerprint, save_importance
from alr.methods.registry import METHODS, Method, register


def record_ones(cfg, model_dir, data_dir, out_path, seed):
    targets = cfg["lora"]["targets"]
    names = [n for n in adaptable_module_names(model_dir) if any(n.endswith("." + t) for t in targets)]
    (weights,) = Path(model_dir).glob("*.safetensors")
    with safe_open(str(weights), "pt") as fh:
        shapes = {n: fh.get_slice(n + ".weight").get_shape() for n in names}
    config = section(cfg, "model", "lora")
    sidecar = {
        "estimator": "ones",
        "model": cfg["model"]["name"],
        "fingerprint": model_fingerprint(model_dir),
        "n_samples": 0,
        "n_tokens": 0,
        "steps": 0,
        "wall_time_s": 0.0,
        "peak_mem_mb": 0.0,
        "nonnegative": True,
        "config": config,
    }
    return save_importance(out_path, {n: torch.ones(s) for n, s in shapes.items()}, sidecar)


def logit_penalty(ctx):
    """The loss-hook factory: called once per run with its alr.methods.registry.HookContext, it returns the hook."""

    def hook(model, inputs, outputs):
        return 1e-3 * outputs.logits.float().square().mean()

    return hook


if "ones_lora" not in METHODS:
    register_estimator(
        Estimator("ones", "uniform importance of the adapted modules (a test plugin)", ("model", "lora"), record_ones)
    )
    register(
        Method(
            "ones_lora",
            "LoRA + uniform-importance penalty + a logit penalty (a test plugin)",
            importance="ones",
            loss_hook=logit_penalty,
        )
    )
