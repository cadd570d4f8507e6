"""Importance files: `<estimator>.safetensors` (tensor name = module name, shape = weight shape)
plus a `<estimator>.json` sidecar (fields in docs/files.md). Loading checks names,
shapes and the model fingerprint, so an importance file made for another model or other targets is
refused, never silently broadcast, and refuses negative values unless the sidecar says the
estimator keeps them (`nonnegative: false`, SI with `importance.clamp: none`)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..core.io import atomic_path, read_json, write_json
from ..core.sections import differences

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ImportanceMismatchError(ValueError):
    pass


def model_fingerprint(model_dir: str | Path) -> str:
    """The sha256 of the checkpoint's weights file(s), from the manifest prepare-model wrote."""
    files = read_json(Path(model_dir) / "manifest.json")["files"]
    weights = sorted(v for k, v in files.items() if k.endswith(".safetensors"))
    return weights[0] if len(weights) == 1 else ",".join(weights)


def sidecar_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def save_importance(path: str | Path, tensors: dict[str, torch.Tensor], sidecar: dict, dtype: str = "float32") -> dict:
    from safetensors.torch import save_file

    path = Path(path)
    stored = {n: t.detach().to("cpu", DTYPES[dtype]).contiguous() for n, t in sorted(tensors.items())}
    with atomic_path(path) as tmp:
        # one metadata key: safetensors writes metadata in hash-map order, so two keys could swap
        # places from one process to the next and break bitwise reproducibility
        header = json.dumps({"estimator": sidecar["estimator"], "fingerprint": sidecar["fingerprint"]}, sort_keys=True)
        save_file(stored, str(tmp), metadata={"alr": header})
    sidecar = dict(
        sidecar,
        dtype=dtype,
        bytes=path.stat().st_size,
        targets=sorted(stored),
        shapes={n: list(t.shape) for n, t in stored.items()},
    )
    write_json(sidecar_path(path), sidecar)
    return sidecar


def check_importance_file(
    path: str | Path,
    fingerprint: str | None = None,
    lora_targets: list[str] | None = None,
    estimator: str | None = None,
    settings: dict[str, dict] | None = None,
) -> dict:
    """The sidecar of an importance file, after checking (cheaply, before any model is loaded) that
    the file exists and was made by `estimator` for this model, for LoRA-shaped files with these
    `lora.targets`, and with these config `settings` ({section: values}, e.g. SI's phase 1)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"importance file {path} does not exist; build it with `alr importance "
            f"--estimator {path.stem}` (or `snakemake {path}`)"
        )
    if path.is_dir():
        raise ImportanceMismatchError(
            f"{path} is a folder; give the importance file itself (results/<model>/importance/<estimator>.safetensors)"
        )
    if path.suffix != ".safetensors":
        hint = (
            f"; it looks like the sidecar of {path.with_suffix('.safetensors')}: give that file"
            if path.suffix == ".json"
            else ""
        )
        raise ImportanceMismatchError(f"{path} is not an importance file (.safetensors){hint}")
    if not sidecar_path(path).exists():
        raise FileNotFoundError(
            f"the sidecar {sidecar_path(path)} of importance file {path} does not exist; rebuild "
            f"both with `alr importance --estimator {path.stem}` (or `snakemake {path}`)"
        )
    sidecar = read_json(sidecar_path(path))
    if estimator is not None and sidecar.get("estimator") != estimator:
        raise ImportanceMismatchError(
            f"{path} holds {sidecar.get('estimator')!r} importance, but this method "
            f"uses {estimator!r}: give results/<model>/importance/{estimator}.safetensors"
        )
    if fingerprint is not None and sidecar.get("fingerprint") != fingerprint:
        raise ImportanceMismatchError(
            f"{path} was computed for model {sidecar.get('fingerprint')}, "
            f"but this model is {fingerprint}; rebuild it for this model"
        )
    made_for = (sidecar.get("config") or {}).get("lora", {}).get("targets")
    if lora_targets is not None and made_for is not None and sorted(made_for) != sorted(lora_targets):
        raise ImportanceMismatchError(
            f"{path} was computed for LoRA targets {made_for}, but lora.targets is "
            f"{list(lora_targets)}; rebuild it with the same lora.targets"
        )
    made = sidecar.get("config") or {}
    recorded = {name: wanted for name, wanted in (settings or {}).items() if name in made}
    differ = differences({name: made[name] for name in recorded}, recorded, "the file")
    if differ:
        raise ImportanceMismatchError(
            f"{path} was made with other settings ({'; '.join(differ)}); rebuild it "
            "with this config or restore the settings"
        )
    return sidecar


def load_importance(
    path: str | Path,
    expected_shapes: dict[str, tuple] | None = None,
    fingerprint: str | None = None,
    device: str | torch.device = "cpu",
    name_suffix: str = "",
) -> tuple[dict, dict]:
    """(fp32 tensors, sidecar); raises ImportanceMismatchError naming what differs.

    `name_suffix=".weight"` reads module weights out of a parameter-named, full-model file (the
    EWC Fisher): tensors `<module>.weight` are returned as `<module>`, other tensors are ignored.
    """
    from safetensors import safe_open

    path = Path(path)
    sidecar = check_importance_file(path, fingerprint)
    with safe_open(str(path), framework="pt") as fh:
        names = list(fh.keys())
        if name_suffix:
            wanted = {n[: -len(name_suffix)]: n for n in names if n.endswith(name_suffix)}
            if expected_shapes is not None:
                wanted = {m: n for m, n in wanted.items() if m in expected_shapes}
        else:
            wanted = {n: n for n in names}
        tensors = {m: fh.get_tensor(n).float().to(device) for m, n in wanted.items()}
    if expected_shapes is not None:
        missing = sorted(set(expected_shapes) - set(tensors))
        extra = sorted(set(tensors) - set(expected_shapes))
        if missing or extra:
            raise ImportanceMismatchError(
                f"{path} does not match the adapted modules: missing {missing[:5]}"
                f"{'...' if len(missing) > 5 else ''}, unexpected {extra[:5]}"
                f"{'...' if len(extra) > 5 else ''}"
            )
        for n, shape in expected_shapes.items():
            if tuple(tensors[n].shape) != tuple(shape):
                raise ImportanceMismatchError(
                    f"{path}: tensor {n} has shape {tuple(tensors[n].shape)}, the module's weight has {tuple(shape)}"
                )
    bad = [n for n, t in tensors.items() if not torch.isfinite(t).all()]
    if bad:
        raise ImportanceMismatchError(f"{path}: tensors {bad[:5]} hold non-finite values")
    if sidecar.get("nonnegative", True):
        bad = [n for n, t in tensors.items() if (t < 0).any()]
        if bad:
            raise ImportanceMismatchError(
                f"{path}: tensors {bad[:5]} hold negative values, but its sidecar "
                "does not say `nonnegative: false`; the file is damaged or was edited"
            )
    return tensors, sidecar
