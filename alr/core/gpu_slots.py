"""One GPU per job on a multi-GPU machine without a cluster scheduler.

Snakemake's local executor limits how many jobs run at once (`--resources gpu=4`, each GPU rule
asking for `gpu=1`) but does not say *which* GPU a job gets, so every job would use GPU 0. With
`ALR_GPUS=0,1,2,3` in the environment, each `alr` command that computes claims one of those GPUs
with an exclusive lock file (held until the process exits, released by the OS even if it is killed)
and sets CUDA_VISIBLE_DEVICES to it before CUDA starts. A CUDA_VISIBLE_DEVICES already set (by
SLURM, or by hand) always wins.

    ALR_GPUS=0,1,2,3 snakemake --profile workflow/profiles/gpu-node
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import tempfile
import time
from pathlib import Path

from .errors import ConfigError

log = logging.getLogger(__name__)
_held: list = []  # open lock files: the locks live as long as this process


def _open_lock(path: Path):
    """The lock file, opened without following a symbolic link planted at its name (the default folder
    is the shared /tmp) and without truncating what is there."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise ConfigError(
            f"GPU lock {path} is a symbolic link; remove it, or set ALR_GPU_LOCK_DIR to a folder of your own"
        ) from None
    return os.fdopen(fd, "r+")


def claim_gpu(poll_s: float = 5.0, timeout_s: float | None = None) -> str | None:
    """Lock a free GPU from ALR_GPUS and make it the only visible one; None when ALR_GPUS is unset."""
    ids = [g.strip() for g in os.environ.get("ALR_GPUS", "").split(",") if g.strip()]
    if not ids or "CUDA_VISIBLE_DEVICES" in os.environ:
        return None
    lock_dir = Path(os.environ.get("ALR_GPU_LOCK_DIR", tempfile.gettempdir()))
    start = time.monotonic()
    while True:
        for gpu in ids:
            fh = _open_lock(lock_dir / f"alr-gpu{gpu}.lock")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            _held.append(fh)
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
            log.info("using GPU %s of ALR_GPUS=%s", gpu, ",".join(ids))
            return gpu
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"every GPU in ALR_GPUS={','.join(ids)} stayed busy for {timeout_s} s")
        time.sleep(poll_s)  # more GPU jobs than GPUs: set `--resources gpu=<number of GPUs>`
