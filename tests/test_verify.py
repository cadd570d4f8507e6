"""Inputs verified on use (alr.assets.verify): a model job re-hashes the prepared model and data against their
manifests before it loads anything, and a changed file stops it with one line naming the file."""

import contextlib
import errno
import json
import shutil
import subprocess

import pytest

import alr.evaluate.run as evaluate_mod
import alr.finetune.run as finetune_mod
from alr.assets.verify import data_files, model_files, verify_inputs
from alr.cli import WRITE_ERRNOS, main
from alr.core.errors import ConfigError


@pytest.fixture
def copies(tiny_model, tiny_data, tmp_path, monkeypatch):
    """This test's own copies of the prepared model and data, and no model load allowed."""
    model, data = tmp_path / "model", tmp_path / "data"
    shutil.copytree(tiny_model, model)
    shutil.copytree(tiny_data, data)

    def forbidden(*a, **k):
        raise AssertionError("the model was loaded before the changed input was found")

    monkeypatch.setattr(finetune_mod, "load_base", forbidden)
    monkeypatch.setattr(evaluate_mod, "load_tuned", forbidden)
    return model, data


def _finetune(cfg_file, model, data, out):
    return ["finetune", "--config", str(cfg_file), "--model-dir", str(model), "--data-dir", str(data)] + [
        "--domain",
        "science",
        "--run-name",
        "lora",
        "--seed",
        "0",
        "--out",
        str(out),
    ]


def test_untouched_inputs_pass(copies):
    model, data = copies
    verify_inputs(model, data)
    assert any(p.name == "model.safetensors" for p in model_files(model))
    assert any(p.parent.name == "science" and p.name == "train.jsonl" for p in data_files(data))


def test_a_flipped_byte_in_the_weights_stops_the_job(copies, tiny_config_file, tmp_path, capsys):
    model, data = copies
    weights = model / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0x01
    weights.write_bytes(bytes(raw))
    code = main(_finetune(tiny_config_file, model, data, tmp_path / "out"))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert f"{weights} does not match the sha256 its manifest recorded" in err and "alr prepare-model" in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_a_changed_label_in_the_data_stops_the_job(copies, tiny_config_file, tmp_path, capsys):
    model, data = copies
    train = data / "science" / "train.jsonl"
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    rows[0]["label"] = (rows[0]["label"] + 1) % len(rows[0]["choices"])
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["evaluate", "--config", str(tiny_config_file), "--model-dir", str(model), "--data-dir", str(data)]
    code = main([*argv, "--domains", "science", "--out", str(tmp_path / "eval.json")])
    err = capsys.readouterr().err
    assert code == 2 and f"{train} does not match the sha256" in err and "alr prepare-data" in err, err
    assert not (tmp_path / "eval.json").exists()


def test_a_missing_file_is_named(copies):
    model, data = copies
    (data / "science" / "valid.jsonl").unlink()
    with pytest.raises(ConfigError, match=r"science/valid\.jsonl is listed in its manifest but missing"):
        verify_inputs(model, data)


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MiB tmpfs at tmp_path/disk (root only); `remount(opts)` changes its options."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root: the full-disk and read-only cases run where it is allowed")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_read_only_output_folder_is_refused_before_any_compute(copies, tiny_config_file, small_disk, capsys):
    model, data = copies
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    code = main(_finetune(tiny_config_file, model, data, small_disk / "run"))
    err = capsys.readouterr().err
    assert code == 2 and f"cannot write under {small_disk}: Read-only file system" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_too_little_room_is_refused_before_any_compute(copies, tiny_config_file, small_disk, capsys, monkeypatch):
    model, data = copies
    free = (model / "model.safetensors").stat().st_size // 2  # less than a training job may write
    monkeypatch.setattr("shutil.disk_usage", lambda p: shutil._ntuple_diskusage(2**21, 2**21 - free, free))
    code = main(_finetune(tiny_config_file, model, data, small_disk / "run"))
    err = capsys.readouterr().err
    assert code == 2 and "MiB free and this job writes up to about" in err, err
    assert not (small_disk / "run").exists()


def test_a_disk_filling_up_mid_job_is_one_line_and_leaves_nothing_that_looks_complete(
    tiny_config_file, tiny_model, tiny_data, small_disk, capsys
):
    """Evaluation with its output on a 2 MiB disk already filled but for a few KiB: the write fails for
    real (ENOSPC), the user reads one line, and no eval.json is left."""
    filler = small_disk / "filler"
    with open(filler, "wb") as fh:
        with contextlib.suppress(OSError):
            fh.write(b"\0" * (2**21 - 24 * 1024))
    argv = ["evaluate", "--config", str(tiny_config_file), "--model-dir", str(tiny_model), "--data-dir"]
    out = small_disk / "eval.json"
    with pytest.MonkeyPatch.context() as mp:  # past the early check, which would refuse this disk
        mp.setattr("alr.core.io.check_writable", lambda *a, **k: None)
        code = main([*argv, str(tiny_data), "--domains", "science", "--out", str(out)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]  # beside lm-eval's progress bars
    assert code == 2 and "Traceback" not in err, err
    assert errors == [f"alr evaluate: error: cannot write {out}: No space left on device; {WRITE_ERRNOS[errno.ENOSPC]}"]
    assert not out.exists()


def test_a_second_command_writing_the_same_run_folder_is_refused(copies, tiny_config_file, tmp_path, capsys):
    """alr's own lock per run folder: while one process holds it, `alr finetune --out` the same folder is one
    line and writes nothing; the lock goes with its holder."""
    import fcntl
    import os

    model, data = copies
    out = tmp_path / "run"
    out.mkdir()
    fd = os.open(out / ".alr-lock", os.O_RDWR | os.O_CREAT)
    os.write(fd, b"4242")
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        code = main(_finetune(tiny_config_file, model, data, out))
    finally:
        os.close(fd)
    err = capsys.readouterr().err
    assert code == 2 and f"{out} is being written by another alr process (pid 4242)" in err, err
    assert sorted(p.name for p in out.iterdir()) == [".alr-lock"]  # the holder's file, nothing of the refused job
