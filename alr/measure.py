"""Wall time, peak memory and the provenance every result record carries."""
from __future__ import annotations

import importlib.metadata
import platform
import resource
import subprocess
import sys
import time

from .config import REPO_ROOT

PACKAGES = ("alr", "torch", "transformers", "peft", "datasets", "lm_eval", "accelerate", "safetensors")


class Timer:
    def __enter__(self) -> "Timer":
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


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict:
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
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)",
        "git_commit": _git_commit(),
    }
