"""Load the prepared base model and tokenizer; wrap it with LoRA; load tuned weights for evaluation."""

from __future__ import annotations

import inspect
from pathlib import Path

from ..assets.model import MANIFEST, checkpoint_path
from ..core.errors import ConfigError
from ..core.io import read_json


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(model_dir: str | Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint_path(model_dir))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_base(model_dir: str | Path, dtype: str = "float32"):
    import torch
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(checkpoint_path(model_dir), dtype=getattr(torch, dtype))
    return model, tok


def wrap_lora(model, lora_cfg: dict):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora_cfg["r"],
        lora_alpha=lora_cfg["alpha"],
        lora_dropout=lora_cfg["dropout"],
        target_modules=list(lora_cfg["targets"]),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def load_tuned(model_dir: str | Path, weights_dir: str | Path | None, dtype: str = "float32", delta_scale: float = 1.0):
    """The model to evaluate: the base model, a full fine-tuned checkpoint (`weights_dir` holds a
    config.json), or the base with a PEFT adapter merged in. `delta_scale` scales the adapter's
    update before merging (WiSE-FT: 0 = base, 1 = tuned)."""
    import torch
    from transformers import AutoModelForCausalLM

    if weights_dir is not None and (Path(weights_dir) / "config.json").exists():
        if delta_scale != 1.0:
            raise ConfigError("delta_scale applies to adapters, not to full checkpoints")
        tok = load_tokenizer(model_dir)  # the base's tokenizer; the base weights are not needed
        model = AutoModelForCausalLM.from_pretrained(weights_dir, dtype=getattr(torch, dtype))
        return model.eval(), tok
    model, tok = load_base(model_dir, dtype)
    if weights_dir is not None:
        weights_dir = Path(weights_dir)
        if not (weights_dir / "adapter_config.json").exists():
            raise FileNotFoundError(
                f"{weights_dir} holds neither a PEFT adapter (adapter_config.json) nor a checkpoint"
            )
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, weights_dir)
        if delta_scale != 1.0:
            for module in lora_modules(model).values():
                module.scale_layer(delta_scale)
        model = model.merge_and_unload()
    model.eval()
    return model, tok


def accepts_logits_to_keep(model) -> bool:
    """Whether the causal LM under `model` (a PEFT wrapper or the model itself) can project only chosen
    positions onto the vocabulary (transformers' `logits_to_keep`)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def base_module_name(peft_name: str) -> str:
    """`base_model.model.model.layers.0.self_attn.q_proj` -> `model.layers.0.self_attn.q_proj`."""
    prefix = "base_model.model."
    return peft_name[len(prefix) :] if peft_name.startswith(prefix) else peft_name


def lora_modules(model) -> dict:
    """LoRA-wrapped modules keyed by the base model's module names, so the names match the
    base checkpoint's weights (and the tensors of importance files)."""
    from peft.tuners.lora import LoraLayer

    return {
        base_module_name(n): m
        for n, m in model.named_modules()
        if isinstance(m, LoraLayer) and hasattr(m, "get_delta_weight")
    }


def name_hub_base(model, model_dir: str | Path) -> None:
    """An adapter's adapter_config.json names its base model: PEFT writes the folder it was loaded from
    (resources/models/<name>, a path of this machine); a checkpoint prepared from the hub
    (`model.source.type: hub`, recorded in its manifest) is named by its repo id and revision instead,
    the snapshot's commit where the manifest pins one. Call before `save_pretrained`; alr itself loads
    adapters onto the model it passes, whatever they name."""
    manifest = read_json(Path(model_dir) / MANIFEST)
    source = manifest.get("source", {})
    if source.get("type") != "hub":
        return
    for adapter in getattr(model, "peft_config", {}).values():  # none for full fine-tuning
        adapter.base_model_name_or_path = source["repo_id"]
        adapter.revision = manifest.get("commit", source.get("revision"))
