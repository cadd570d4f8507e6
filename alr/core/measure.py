"""Wall time, peak memory and the provenance every result record carries."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import resource
import subprocess
import sys
import time

from .layout import REPO_ROOT

PACKAGES = (__name__.split(".")[0], "torch", "transformers", "peft", "datasets", "lm_eval", "accelerate", "safetensors")


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def reset_peak_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb() -> dict:
    """Peak accelerator memory (torch allocator) and peak resident memory of this process, in MiB."""
    import torch

    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = {"peak_rss_mb": round(rss_kb / 1024, 1), "peak_accelerator_mb": None}
    if torch.cuda.is_available():
        out["peak_accelerator_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def peak_mem_mb() -> float:
    """The one peak-memory number of the result contracts: accelerator memory if used, else RSS."""
    m = peak_memory_mb()
    return m["peak_accelerator_mb"] if m["peak_accelerator_mb"] is not None else m["peak_rss_mb"]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def config_hash(cfg: dict) -> str:
    """sha256 of the config as canonical JSON (sorted keys): equal hashes, equal settings."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def provenance(cfg: dict | None = None) -> dict:
    """Package versions, git commit (and whether the tree had uncommitted changes), platform, and
    the hash of the config sections the command ran with."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    import torch

    return {
        "versions": versions,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else f"cpu ({torch.get_num_threads()} threads)",
        "git_commit": _git("rev-parse", "HEAD") or None,
        "git_dirty": None
        if (status := _git("status", "--porcelain", "--untracked-files=no")) is None
        else bool(status),
        "config_sha256": config_hash(cfg) if cfg is not None else None,
    }
