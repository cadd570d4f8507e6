"""No command deletes what it did not create. Each folder a command replaces (prepare-model's and
prepare-data's --out, finetune's model/, importance's phase-1 adapter, evaluate's lm-eval files) is
refused, before any compute, with one line and exit 2 when it holds anything the same command did
not write, and is then left untouched; the command's own earlier output is replaced whole; the
working folder and its parents are refused; a failed swap puts the old folder back."""

import json
import os

import pytest

import alr.assets.build
import alr.assets.model
import alr.core.io
import alr.evaluate.run
import alr.finetune.run
import alr.importance.record
from alr.cli import main
from alr.core.errors import ConfigError
from alr.core.io import OWNER_RECORD, atomic_dir, check_replaceable, read_json
from alr.core.layout import phase1_adapter
from alr.evaluate.records import lm_eval_dir

# command: (the module and function that does its compute, the kind its folder's record names)
COMPUTE = {
    "prepare-model": (alr.assets.model, "_load_from_source", "prepare-model"),
    "prepare-data": (alr.assets.build, "_dataset_splits", "prepare-data"),
    "finetune": (alr.finetune.run, "load_base", "finetune"),
    "importance": (alr.importance.record, "load_base", "importance"),
    "evaluate": (alr.evaluate.run, "load_tuned", "evaluate"),
}


def _command(name, config, model, data, out):
    """(argv of `alr <name>` writing under `out`, the folder it replaces)."""
    c = ["--config", str(config)]
    md = ["--model-dir", str(model), "--data-dir", str(data)]
    if name == "prepare-model":
        return ["prepare-model", *c, "--out", str(out)], out
    if name == "prepare-data":
        return ["prepare-data", *c, "--out", str(out), "--downloads", str(out.parent / "dl")], out
    if name == "finetune":
        argv = ["finetune", *c, *md, "--domain", "science", "--run-name", "lora", "--seed", "0", "--out", str(out)]
        return argv, out / "model"
    if name == "importance":
        tensors = out / "si.safetensors"
        return ["importance", *c, *md, "--estimator", "si", "--out", str(tensors)], phase1_adapter(tensors)
    argv = ["evaluate", *c, *md, "--domains", "science", "--limit", "2", "--out", str(out / "eval.json")]
    return argv, lm_eval_dir(out / "eval.json")


def _tree(folder):
    """{relative path: bytes, or None for a folder} of everything under `folder`."""
    return {p.relative_to(folder).as_posix(): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def _foreign(folder):
    """A user's folder: a precious file and a subfolder with a file of its own."""
    (folder / "sub").mkdir(parents=True)
    (folder / "precious.txt").write_text("keep me\n")
    (folder / "sub" / "notes.md").write_text("mine\n")
    return _tree(folder)


def _one_error_line(err, command):
    lines = [line for line in err.splitlines() if f"alr {command}: error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def forbid_compute(monkeypatch):
    """Make the command's compute fail the test: a refused folder must cost nothing."""

    def forbid(command):
        module, name, _ = COMPUTE[command]

        def forbidden(*a, **k):
            raise AssertionError(f"`alr {command}` computed before refusing its output folder")

        monkeypatch.setattr(module, name, forbidden)

    return forbid


@pytest.mark.parametrize("command", list(COMPUTE))
def test_a_foreign_folder_is_refused_untouched_before_compute(
    command, tiny_config_file, tiny_model, tiny_data, tmp_path, capsys, forbid_compute
):
    argv, folder = _command(command, tiny_config_file, tiny_model, tiny_data, tmp_path / "out")
    before = _foreign(folder)
    forbid_compute(command)
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err, command)
    assert f"output folder {folder} holds precious.txt, which `alr {command}` did not write" in line
    assert "choose another --out, or move that folder away" in line
    assert _tree(folder) == before
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left


@pytest.mark.parametrize("command", list(COMPUTE))
def test_the_commands_own_earlier_output_is_replaced_whole(command, tiny_config_file, tiny_model, tiny_data, tmp_path):
    """An earlier output of the same command (its record lists a file this run does not write) is
    replaced by a folder holding only this run's files, with a record the next run accepts."""
    argv, folder = _command(command, tiny_config_file, tiny_model, tiny_data, tmp_path / "out")
    kind = COMPUTE[command][2]
    with atomic_dir(folder, kind) as tmp:
        (tmp / "stale.txt").write_text("from an earlier run\n")
    assert read_json(folder / OWNER_RECORD) == {"kind": kind, "files": ["stale.txt"]}
    assert main(argv) == 0
    record = read_json(folder / OWNER_RECORD)
    assert record["kind"] == kind and "stale.txt" not in record["files"] and record["files"]
    assert sorted(record["files"] + [OWNER_RECORD]) == sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
    )
    check_replaceable(folder, kind)  # a rerun may replace it
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []


def test_prepare_model_twice_replaces_its_own_output(tiny_config_file, tmp_path):
    out = tmp_path / "model"
    argv = ["prepare-model", "--config", str(tiny_config_file), "--out", str(out)]
    assert main(argv) == 0
    first = _tree(out)
    inode = out.stat().st_ino
    assert main(argv) == 0
    assert _tree(out) == first and out.stat().st_ino != inode  # a new folder, the same bytes


@pytest.mark.parametrize("command", ["prepare-model", "prepare-data"])
@pytest.mark.parametrize("out", [".", ".."])
def test_the_working_folder_and_its_parents_are_refused(
    command, out, tiny_config_file, tmp_path, monkeypatch, capsys, forbid_compute
):
    work = tmp_path / "work"
    before = _foreign(work)
    monkeypatch.chdir(work)
    forbid_compute(command)
    assert main([command, "--config", str(tiny_config_file), "--out", out]) == 2
    line = _one_error_line(capsys.readouterr().err, command)
    assert f"output folder {out} is the working folder or holds it" in line
    assert _tree(work) == before


def test_an_empty_folder_and_one_of_empty_folders_are_replaceable(tmp_path):
    """As Snakemake leaves them: it makes the folders of a rule's outputs before the job runs."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "dirs" / "science").mkdir(parents=True)
    for name in ("empty", "dirs", "absent"):
        with atomic_dir(tmp_path / name, "prepare-data") as tmp:
            (tmp / "manifest.json").write_text("{}\n")
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == [OWNER_RECORD, "manifest.json"]


def test_own_output_less_some_files_is_replaceable_but_not_with_a_file_added(tmp_path):
    """Snakemake deletes a rule's declared outputs (the manifest too) before rerunning it: what is left
    is still the command's own. A file added since is not, nor is another command's output."""
    folder = tmp_path / "model"
    with atomic_dir(folder, "prepare-model") as tmp:
        for name in ("manifest.json", "config.json", "model.safetensors"):
            (tmp / name).write_text(name)
    (folder / "manifest.json").unlink()
    check_replaceable(folder, "prepare-model")
    with pytest.raises(ConfigError, match="holds the output of `alr prepare-model`, not of `alr prepare-data`"):
        check_replaceable(folder, "prepare-data")
    (folder / "notes.txt").write_text("mine\n")
    with pytest.raises(ConfigError, match="holds notes.txt, which `alr prepare-model` did not write"):
        check_replaceable(folder, "prepare-model")


@pytest.mark.parametrize("record", ["not json", json.dumps(["files"]), json.dumps({"kind": "prepare-model"})])
def test_an_unreadable_ownership_record_owns_nothing(tmp_path, record):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / OWNER_RECORD).write_text(record)
    with pytest.raises(ConfigError, match=f"holds {OWNER_RECORD}, which `alr prepare-model` did not write"):
        check_replaceable(folder, "prepare-model")


def test_a_file_or_a_link_is_refused(tmp_path):
    (tmp_path / "file").write_text("mine\n")
    with atomic_dir(tmp_path / "own", "prepare-model") as tmp:
        (tmp / "config.json").write_text("{}")
    (tmp_path / "link").symlink_to(tmp_path / "own")
    for name in ("file", "link"):
        with pytest.raises(ConfigError, match=f"output folder {tmp_path / name} exists and is not a folder"):
            check_replaceable(tmp_path / name, "prepare-model")
    assert (tmp_path / "file").read_text() == "mine\n" and (tmp_path / "own" / "config.json").exists()


def test_a_failed_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    """The rename of the new folder into place fails: the old one, renamed aside, is renamed back,
    and the new one is removed."""
    folder = tmp_path / "model"
    with atomic_dir(folder, "prepare-model") as tmp:
        (tmp / "config.json").write_text("old")
    before = _tree(folder)
    real_rename = os.rename

    def rename(src, dst):
        if str(src).endswith(".tmp"):  # the new folder
            raise OSError("injected: rename failed")
        real_rename(src, dst)

    monkeypatch.setattr(alr.core.io.os, "rename", rename)
    with pytest.raises(OSError, match="injected"):
        with atomic_dir(folder, "prepare-model") as tmp:
            (tmp / "config.json").write_text("new")
    assert _tree(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_folder_that_cannot_be_listed_never_passes_for_empty(tmp_path, monkeypatch):
    """A subfolder os.walk cannot list (as a PermissionError would leave it; root lists anything, so the
    error is injected) is named as what the folder holds, rather than taken for empty."""
    folder = tmp_path / "out"
    (folder / "sub").mkdir(parents=True)
    real_walk = os.walk

    def walk(top, onerror=None, **kwargs):
        for root, dirs, files in real_walk(top, onerror=onerror, **kwargs):
            if os.path.basename(root) == "sub":
                onerror(PermissionError(13, "Permission denied", root))
                continue
            yield root, dirs, files

    monkeypatch.setattr(alr.core.io.os, "walk", walk)
    with pytest.raises(ConfigError, match="holds sub, which `alr prepare-model` did not write"):
        check_replaceable(folder, "prepare-model")


def test_a_file_is_flushed_to_disk_before_its_name_appears(tmp_path, monkeypatch):
    """atomic_path fsyncs the temporary file before renaming it, so a crash never leaves the final name
    pointing at bytes that were never written."""
    import os

    from alr.core.io import write_text

    synced, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def replace(src, dst):
        assert str(src) in synced, f"{src} renamed to {dst} before it was flushed"
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_text(tmp_path / "out.txt", "done")
    assert (tmp_path / "out.txt").read_text() == "done" and len(synced) == 1


def test_weights_written_by_safetensors_are_readable_by_the_group(tmp_path):
    """safetensors' save_file creates its file 0600; alr's writers give every file the umask's mode, so a
    group sharing a results folder can read the weights and importance (here umask 022: 0644)."""
    import os
    import stat

    import torch
    from safetensors.torch import save_file

    from alr.core.io import atomic_dir, atomic_path

    old = os.umask(0o022)
    try:
        import alr.core.io

        saved_umask, alr.core.io._UMASK = alr.core.io._UMASK, 0o022
        with atomic_path(tmp_path / "one.safetensors") as tmp:
            save_file({"w": torch.zeros(2)}, str(tmp))
        with atomic_dir(tmp_path / "adapter", "test") as folder:
            save_file({"w": torch.zeros(2)}, str(folder / "adapter_model.safetensors"))
    finally:
        alr.core.io._UMASK = saved_umask
        os.umask(old)
    for path in (tmp_path / "one.safetensors", tmp_path / "adapter" / "adapter_model.safetensors"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, (path, oct(path.stat().st_mode))
