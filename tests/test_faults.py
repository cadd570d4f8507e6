"""Fault injection on the tiny model: each bad input is refused (before the model loads) with a message
naming the file or key and the fix; NaN stops training; killed jobs leave nothing complete and resume
bitwise; no code path touches the network; same config and seed, same bytes."""

import copy
import json
import os
import re
import shutil
import signal
import socket
import time

import pytest
import yaml

import alr.finetune.run as finetune_mod
import alr.importance.record as record_mod
import alr.model.trainer as trainer_mod
from alr.cli import main
from alr.core.io import read_json, sha256_file
from alr.finetune.run import finetune
from alr.methods.runs import resolve_run
from alr.model.checkpoints import CheckpointMismatchError
from tests.tiny import Killed, kill_at_step, record, snakemake, tiny_config


def _block_network(mp, attempts: list):
    """Every internet connection or DNS lookup is recorded and refused (local AF_UNIX sockets stay)."""
    real_connect = socket.socket.connect

    def connect(sock, address, *a):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(("connect", address))
            raise OSError(f"network blocked by the test: connect {address}")
        return real_connect(sock, address, *a)

    def refuse(kind):
        def blocked(*args, **kwargs):
            attempts.append((kind, args[:1]))
            raise OSError(f"network blocked by the test: {kind} {args[:1]}")

        return blocked

    mp.setattr(socket.socket, "connect", connect)
    mp.setattr(socket.socket, "connect_ex", lambda s, a: connect(s, a))
    mp.setattr(socket, "create_connection", refuse("create_connection"))
    mp.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The CLI chain (prepare-model, prepare-data from the local fake archive, importance, finetune,
    evaluate) with the network blocked; every other test reuses its model, data and importance file."""
    tmp = tmp_path_factory.mktemp("faults")
    cfg = tiny_config(tmp)
    cfg_path = tmp / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    c = ["--config", str(cfg_path)]
    paths = {
        "model": tmp / "model",
        "data": tmp / "data",
        "imp": tmp / "importance" / "si.safetensors",
        "run": tmp / "run" / "science" / "lora" / "seed0",
    }
    attempts, codes = [], []
    with pytest.MonkeyPatch.context() as mp:
        _block_network(mp, attempts)
        md = ["--model-dir", str(paths["model"]), "--data-dir", str(paths["data"])]
        codes.append(main(["prepare-model", *c, "--out", str(paths["model"]), "--downloads", str(tmp / "dl")]))
        codes.append(main(["prepare-data", *c, "--out", str(paths["data"]), "--downloads", str(tmp / "dl")]))
        codes.append(main(["importance", *c, *md, "--out", str(paths["imp"])]))
        codes.append(
            main(
                [
                    "finetune",
                    *c,
                    *md,
                    "--domain",
                    "science",
                    "--run-name",
                    "lora",
                    "--seed",
                    "0",
                    "--out",
                    str(paths["run"]),
                ]
            )
        )
        codes.append(
            main(
                [
                    "evaluate",
                    *c,
                    *md,
                    "--domains",
                    "science",
                    "--weights",
                    str(paths["run"] / "model"),
                    "--out",
                    str(paths["run"] / "eval.json"),
                ]
            )
        )
    return tmp, cfg, paths, attempts, codes


def _finetune_cli(cfg, paths, out, method="lora", **flags):
    argv = [
        "finetune",
        "--config",
        json.dumps(cfg),
        "--model-dir",
        str(flags.get("model", paths["model"])),
        "--data-dir",
        str(flags.get("data", paths["data"])),
        "--domain",
        "science",
        "--run-name",
        method,
        "--seed",
        "0",
        "--out",
        str(out),
    ]
    if "importance" in flags:
        argv += ["--importance", str(flags["importance"])]
    return main(argv)


@pytest.fixture
def no_model_load(monkeypatch):
    """Bad input must be refused before the expensive part: loading the model fails the test."""

    def forbidden(*a, **k):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr(finetune_mod, "load_base", forbidden)


def test_offline_cli_chain_never_touches_the_network(built):
    _, _, paths, attempts, codes = built
    assert codes == [0, 0, 0, 0, 0]
    assert attempts == []
    assert (paths["run"] / "model" / "adapter_model.safetensors").exists() and (paths["run"] / "eval.json").exists()


def test_provenance_records_versions_commit_and_config_hash(built):
    _, _, paths, _, _ = built
    train = read_json(paths["run"] / "train.json")
    for rec in (train, read_json(paths["run"] / "eval.json"), read_json(paths["imp"].with_suffix(".json"))):
        prov = rec["provenance"]
        assert prov["versions"]["torch"] and prov["versions"]["transformers"] and prov["versions"]["peft"]
        assert len(prov["git_commit"]) == 40 and isinstance(prov["git_dirty"], bool)
        assert len(prov["config_sha256"]) == 64
    from alr.core.measure import config_hash

    assert train["provenance"]["config_sha256"] == config_hash(train["config"])


@pytest.mark.parametrize(
    "key, value, expected",
    [
        (
            "lr_scheduler",
            "cosine_annealing",
            "config key 'train.lr_scheduler': 'cosine_annealing' is not one of "
            "['linear', 'cosine', 'constant', 'constant_with_warmup']",
        ),
        ("checkpoint_steps", -5, "config key 'train.checkpoint_steps': -5 is less than the minimum of 0"),
    ],
)
def test_config_error_names_key_and_allowed_values(built, capsys, key, value, expected):
    _, cfg, paths, _, _ = built
    bad = copy.deepcopy(cfg)
    bad["train"][key] = value
    assert _finetune_cli(bad, paths, paths["run"].parent / "never") == 2
    assert expected in capsys.readouterr().err
    assert not (paths["run"].parent / "never").exists()


def _corrupt(lines):
    lines[2] = '{"id": "x", "question": "broken'
    return lines


def _label(lines):
    rec = json.loads(lines[1])
    rec["label"] = len(rec["choices"]) + 3
    lines[1] = json.dumps(rec)
    return lines


def _manifest_agrees(data, name: str, split: str) -> None:
    """Rewrite the data manifest's sha256 of one split to the file's (past the hash check of alr.assets.verify)."""
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["datasets"][name]["splits"][split]["sha256"] = sha256_file(data / name / f"{split}.jsonl")
    (data / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "edit, expected",
    [
        (_corrupt, "science/train.jsonl:3: not valid JSON"),
        (_label, "science/train.jsonl:2: label 7 out of range for 4 choices"),
        (lambda lines: [], "science/train.jsonl: the split is empty"),
    ],
)
def test_bad_data_is_refused_with_file_and_line(built, tmp_path, capsys, no_model_load, edit, expected):
    """A split that changed after it was built stops at its hash (tests/test_verify.py); one whose manifest
    was rewritten to match (by hand, or by another tool) still gets the reader's file and line."""
    _, cfg, paths, _, _ = built
    data = tmp_path / "data"
    shutil.copytree(paths["data"], data)
    train = data / "science" / "train.jsonl"
    train.write_text("".join(line + "\n" for line in edit(train.read_text().splitlines())))
    assert _finetune_cli(cfg, paths, tmp_path / "out", data=data) == 2
    assert f"{train} does not match the sha256 its manifest recorded" in capsys.readouterr().err
    _manifest_agrees(data, "science", "train")
    assert _finetune_cli(cfg, paths, tmp_path / "out", data=data) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_evaluate_refuses_a_bad_test_split_or_missing_weights_before_loading(built, tmp_path, capsys, monkeypatch):
    import alr.evaluate.run

    def forbidden(*a, **k):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr(alr.evaluate.run, "load_tuned", forbidden)
    _, cfg, paths, _, _ = built
    data = tmp_path / "data"
    shutil.copytree(paths["data"], data)
    test = data / "basic_logic" / "test.jsonl"
    test.write_text("".join(line + "\n" for line in _label(test.read_text().splitlines())))
    _manifest_agrees(data, "basic_logic", "test")
    argv = [
        "evaluate",
        "--config",
        json.dumps(cfg),
        "--model-dir",
        str(paths["model"]),
        "--domains",
        "science",
        "--out",
        str(tmp_path / "eval.json"),
    ]
    assert main([*argv, "--data-dir", str(data)]) == 2
    assert re.search(r"basic_logic/test.jsonl:2: label \d+ out of range for 4 choices", capsys.readouterr().err)
    assert main([*argv, "--data-dir", str(paths["data"]), "--weights", str(tmp_path / "absent")]) == 2
    assert (
        f"tuned weights {tmp_path / 'absent'} do not exist; build them with `alr finetune`" in capsys.readouterr().err
    )
    assert not (tmp_path / "eval.json").exists()


@pytest.mark.parametrize(
    "missing, expected",
    [
        ("model", "no prepared model at {path}; build it with `alr prepare-model`"),
        ("data", "{path}/science/train.jsonl does not exist; build it with `alr prepare-data`"),
        ("importance", "importance file {path} does not exist; build it with `alr importance --estimator absent`"),
    ],
)
def test_missing_asset_names_the_command_that_builds_it(built, tmp_path, capsys, no_model_load, missing, expected):
    _, cfg, paths, _, _ = built
    flags = {"importance": paths["imp"], missing: tmp_path / "absent"}
    assert _finetune_cli(cfg, paths, tmp_path / "out", method="alr", **flags) == 2
    assert expected.format(path=tmp_path / "absent") in capsys.readouterr().err


def test_importance_for_another_model_shows_both_fingerprints(built, tmp_path, capsys, no_model_load):
    _, cfg, paths, _, _ = built
    other = tmp_path / "si.safetensors"
    shutil.copy(paths["imp"], other)
    sidecar = read_json(paths["imp"].with_suffix(".json"))
    ours = sidecar["fingerprint"]
    sidecar["fingerprint"] = "f" * 64
    other.with_suffix(".json").write_text(json.dumps(sidecar))
    assert _finetune_cli(cfg, paths, tmp_path / "out", method="alr", importance=other) == 2
    err = capsys.readouterr().err
    assert f"{other} was computed for model {'f' * 64}, but this model is {ours}" in err


def test_importance_for_other_targets_is_refused(built, tmp_path, capsys, no_model_load):
    _, cfg, paths, _, _ = built
    c = copy.deepcopy(cfg)
    c["lora"]["targets"] = ["q_proj", "k_proj"]
    assert _finetune_cli(c, paths, tmp_path / "out", method="alr", importance=paths["imp"]) == 2
    assert (
        f"{paths['imp']} was computed for LoRA targets ['q_proj', 'v_proj'], but lora.targets is ['q_proj', 'k_proj']"
    ) in capsys.readouterr().err


def test_nan_stops_training_with_step_and_last_finite_values(built, tmp_path, capsys):
    _, cfg, paths, _, _ = built
    c = copy.deepcopy(cfg)
    c["train"].update(lr=1e30, max_steps=6, checkpoint_steps=1)  # step 1's update makes step 2 non-finite
    out = tmp_path / "out"
    assert _finetune_cli(c, paths, out) == 3
    err = capsys.readouterr().err
    assert "became nan at step 2; last finite values (step 1): loss " in err and "no model or train.json" in err
    assert not (out / "model").exists() and not (out / "train.json").exists()
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-1"]  # no NaN state saved


def _adapter_bytes(run):
    return (run / "model" / "adapter_model.safetensors").read_bytes()


@pytest.mark.parametrize("method", ["alr", "full_ft"])
def test_resume_after_a_kill_matches_an_uninterrupted_run_bitwise(built, tmp_path, monkeypatch, method):
    """Dropout on (RNG), several epochs (data order), the penalty active; killed after step 5 with the
    last checkpoint at step 4 (mid-epoch), a half-written checkpoint-6 left behind."""
    _, cfg, paths, _, _ = built
    c = copy.deepcopy(cfg)
    c["train"].update(max_steps=8, checkpoint_steps=2)
    c["baselines"]["full_ft_lr"] = 1e-3
    weights = "adapter_model.safetensors" if method == "alr" else "model.safetensors"
    args = (paths["model"], paths["data"], "science", 0)
    imp = paths["imp"] if method == "alr" else None  # full_ft takes no importance file
    whole = finetune(resolve_run(c, method), *args, tmp_path / "whole", imp)
    assert not (tmp_path / "whole" / "checkpoints").exists()  # removed after a successful finish

    with monkeypatch.context() as mp:
        mp.setattr(trainer_mod, "no_final_checkpoint_callback", kill_at_step(5))
        with pytest.raises(Killed):
            finetune(resolve_run(c, method), *args, tmp_path / "run", imp)
    ckpts = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["checkpoint-4", "run.json"]
    assert not (tmp_path / "run" / "model").exists() and not (tmp_path / "run" / "train.json").exists()
    (ckpts / "checkpoint-6").mkdir()  # as if killed while the Trainer wrote it
    (ckpts / "checkpoint-6" / weights).write_bytes(b"partial")

    changed = copy.deepcopy(c)
    changed["train"]["lr"] = 5e-3
    changed["baselines"]["full_ft_lr"] = 5e-4
    with pytest.raises(CheckpointMismatchError, match=r"config\.train\.lr: .* in the checkpoints, .* now"):
        finetune(resolve_run(changed, method), *args, tmp_path / "run", imp)

    resumed = finetune(resolve_run(c, method), *args, tmp_path / "run", imp)
    assert resumed["resumed_from_step"] == 4 and whole["resumed_from_step"] is None
    for key in ("steps", "tokens", "first_ce", "final_ce", "final_reg"):
        assert resumed[key] == whole[key], key
    assert (tmp_path / "run" / "model" / weights).read_bytes() == (tmp_path / "whole" / "model" / weights).read_bytes()
    assert not ckpts.exists()


def test_phase1_restarts_from_scratch_and_reproduces_bitwise(built, tmp_path, monkeypatch):
    """Phase 1 keeps no checkpoints (it is short, and SI accumulates over every step): a killed phase 1
    leaves no importance file, and the re-run writes the same bytes as the first, uninterrupted run."""
    _, cfg, paths, _, _ = built
    out = tmp_path / "si.safetensors"
    real = record_mod.si_callback

    def killing_callback(recorder):
        cb = real(recorder)
        step_end = cb.on_optimizer_step

        def on_optimizer_step(args, state, control, **kw):
            step_end(args, state, control, **kw)
            raise Killed

        cb.on_optimizer_step = on_optimizer_step
        return cb

    with monkeypatch.context() as mp:
        mp.setattr(record_mod, "si_callback", killing_callback)
        with pytest.raises(Killed):
            record("si", cfg, paths["model"], paths["data"], out)
    assert list(tmp_path.iterdir()) == []
    record("si", cfg, paths["model"], paths["data"], out)
    assert sha256_file(out) == sha256_file(paths["imp"])


def test_same_config_and_seed_give_identical_adapter_and_scores(built, tmp_path):
    from alr.evaluate.run import evaluate

    _, cfg, paths, _, _ = built
    again = tmp_path / "again"
    finetune(resolve_run(cfg, "lora"), paths["model"], paths["data"], "science", 0, again)
    assert _adapter_bytes(again) == _adapter_bytes(paths["run"])
    first = read_json(paths["run"] / "eval.json")
    second = evaluate(cfg, paths["model"], paths["data"], ["science"], again / "eval.json", again / "model")
    assert second["tasks"] == first["tasks"] and second["general"] == first["general"]


def _snakemake(work, cfg_path, *extra, wait=True):
    return snakemake(work, cfg_path, *extra, wait=wait, timeout=600)


@pytest.mark.slow
def test_snakemake_killed_mid_training_resumes_on_rerun(built, tmp_path):
    """SIGKILL the whole snakemake process group (snakemake and `alr finetune`) once a checkpoint
    exists: nothing looks finished; after `--unlock` the re-run resumes and matches a clean run."""
    _, cfg, paths, _, _ = built
    c = copy.deepcopy(cfg)
    c["train"].update(max_steps=25, checkpoint_steps=5)
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(c))
    work = tmp_path / "work"
    # the prepared model and data as Snakemake's own rules would leave them (those rules have no
    # inputs, so existing outputs are up to date): the DAG left to run is the one finetune job
    shutil.copytree(paths["model"], work / "resources" / "models" / "tiny-llama")
    shutil.copytree(paths["data"], work / "resources" / "data")
    rel = "results/tiny-llama/science/lora/seed0"
    run = work / rel
    proc = _snakemake(work, cfg_path, f"{rel}/train.json", wait=False)
    deadline = time.monotonic() + 300
    while not list((run / "checkpoints").glob("checkpoint-*/trainer_state.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "snakemake ended before the first checkpoint"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # no model/, no train.json; the killed command's lock file stays (its lock died with it): the rerun takes it
    assert sorted(p.name for p in run.iterdir()) == [".alr-lock", "checkpoints"]
    dry = _snakemake(work, cfg_path, f"{rel}/train.json", "-n")
    assert dry.returncode == 0 and re.search(r"^finetune\s+1$", dry.stdout, re.M)  # still to be done
    assert re.search(r"^total\s+1$", dry.stdout, re.M)

    assert _snakemake(work, cfg_path, "--unlock").returncode == 0
    done = _snakemake(work, cfg_path, f"{rel}/train.json")
    assert done.returncode == 0, done.stderr[-3000:]
    log = (work / "logs" / "finetune" / "tiny-llama" / "science" / "lora" / "seed0.log").read_text()
    rec = read_json(run / "train.json")
    assert rec["steps"] == 25 and rec["resumed_from_step"] >= 5
    assert f"resuming from {rel}/checkpoints/checkpoint-{rec['resumed_from_step']}" in log
    assert sorted(p.name for p in run.iterdir()) == ["model", "train.json"]  # checkpoints removed

    clean = finetune(resolve_run(c, "lora"), paths["model"], paths["data"], "science", 0, tmp_path / "clean")
    assert clean["final_ce"] == rec["final_ce"]
    assert _adapter_bytes(tmp_path / "clean") == _adapter_bytes(run)
