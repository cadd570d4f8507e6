import os
import subprocess
import sys

import pytest

from alr.core import gpu_slots
from alr.core.errors import ConfigError

CLAIM = "from alr.core.gpu_slots import claim_gpu; print(claim_gpu(poll_s=0.1, timeout_s=1))"


def _claim_in_subprocess(env):
    proc = subprocess.run([sys.executable, "-c", CLAIM], capture_output=True, text=True, timeout=60, env=env)
    return proc.stdout.strip() or proc.stderr.strip().splitlines()[-1]


def test_each_process_gets_its_own_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("ALR_GPUS", "5,7")
    monkeypatch.setenv("ALR_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpu_slots, "_held", [])
    assert gpu_slots.claim_gpu() == "5" and os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    assert _claim_in_subprocess(env) == "7"  # 5 is held by this process
    assert _claim_in_subprocess(dict(env, CUDA_VISIBLE_DEVICES="1")) == "None"  # a scheduler's choice wins
    gpu_slots._held.pop().close()  # this process releases GPU 5
    assert _claim_in_subprocess(env) == "5"


def test_all_gpus_busy_times_out(tmp_path, monkeypatch):
    monkeypatch.setenv("ALR_GPUS", "3")
    monkeypatch.setenv("ALR_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpu_slots, "_held", [])
    assert gpu_slots.claim_gpu() == "3"
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    assert "TimeoutError" in _claim_in_subprocess(env)
    gpu_slots._held.pop().close()


def test_a_planted_link_at_a_lock_path_is_refused_and_its_target_untouched(tmp_path, monkeypatch):
    """The lock folder defaults to the shared /tmp: a symbolic link at a lock's name is never followed."""
    target = tmp_path / "victim.txt"
    target.write_text("keep me")
    (tmp_path / "alr-gpu0.lock").symlink_to(target)
    monkeypatch.setenv("ALR_GPUS", "0")
    monkeypatch.setenv("ALR_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        gpu_slots.claim_gpu(poll_s=0.01, timeout_s=0.1)
    assert target.read_text() == "keep me"
