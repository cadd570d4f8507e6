"""Inputs verified on use: a model job re-hashes the prepared model's and data's files against the sha256s
their manifests recorded when `alr prepare-model` / `alr prepare-data` wrote them, before it reads them.

A run's identity (its fingerprint, the sidecars' provenance) is built from those manifests, so a file that
changed afterwards (a flipped byte, a hand edit) would otherwise be used under the identity of the file it
replaced. Hashing every time, rather than trusting a size-and-mtime stamp, also catches changes that keep
both; its cost is measured in docs/testing.md (under 1% of the default's job time: about 0.6 s per job for
the 538 MB checkpoint).
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import ConfigError
from ..core.io import read_json, sha256_file
from ..core.layout import dataset_file

MANIFEST = "manifest.json"


def _check(path: Path, expected: str, rebuild: str) -> None:
    if not path.is_file():
        raise ConfigError(f"{path} is listed in its manifest but missing; rebuild it with `{rebuild}`")
    got = sha256_file(path)
    if got != expected:
        raise ConfigError(
            f"{path} does not match the sha256 its manifest recorded ({expected[:12]}…, now {got[:12]}…): "
            f"it changed after it was built; rebuild it with `{rebuild}`"
        )


def model_files(model_dir: str | Path) -> dict[Path, str]:
    """{file: sha256} of a prepared checkpoint, where its weights are read (its folder, or for a hub model
    the snapshot its manifest pins)."""
    from .model import checkpoint_path

    manifest = read_json(Path(model_dir) / MANIFEST)
    folder = checkpoint_path(model_dir)
    return {folder / name: sha for name, sha in manifest["files"].items()}


def data_files(data_dir: str | Path) -> dict[Path, str]:
    """{split file: sha256} of every dataset split a prepared data folder holds."""
    manifest = read_json(Path(data_dir) / MANIFEST)
    return {
        Path(dataset_file(name, split, data_dir)): entry["sha256"]
        for name, dataset in manifest["datasets"].items()
        for split, entry in dataset["splits"].items()
    }


def verify_inputs(model_dir: str | Path | None, data_dir: str | Path | None) -> None:
    """Raise ConfigError (one line naming the file and the fix) when a prepared file no longer hashes to
    its manifest's sha256. A folder without a manifest is left to the command's own check, which says how
    to build it."""
    if model_dir is not None and (Path(model_dir) / MANIFEST).is_file():
        for path, sha in model_files(model_dir).items():
            _check(path, sha, f"alr prepare-model --config CONFIG --out {model_dir}")
    if data_dir is not None and (Path(data_dir) / MANIFEST).is_file():
        for path, sha in data_files(data_dir).items():
            _check(path, sha, f"alr prepare-data --config CONFIG --out {data_dir}")
