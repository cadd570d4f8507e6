"""train.report_to: where the Trainer's metrics go. It is never part of a job's config (so changing it
reruns nothing; tests/test_pipeline.py checks that by dry run), reaches the jobs as ALR_REPORT_TO, and a
tracker whose package is missing is refused before any training."""

import importlib.util
import os

import pytest

from alr.core.errors import ConfigError
from alr.core.layout import training_tracking
from alr.core.sections import REPORT_TO_ENV, section
from alr.model.trainer import report_to, training_arguments

TRAIN = {"epochs": 1, "batch_size": 2, "grad_accum": 1, "lr": 1e-3, "weight_decay": 0.0, "warmup_ratio": 0.0}
TRAIN |= {"lr_scheduler": "linear", "max_grad_norm": 1.0, "max_steps": 2}


def test_no_job_is_handed_report_to():
    cfg = {"train": {"lr": 0.1, "report_to": "wandb"}, "model": {"name": "m"}}
    assert section(cfg, "train", "model") == {"train": {"lr": 0.1}, "model": {"name": "m"}}
    assert cfg["train"]["report_to"] == "wandb"  # the config itself is untouched


def test_the_environment_wins_and_a_missing_package_is_refused(monkeypatch):
    monkeypatch.delenv(REPORT_TO_ENV, raising=False)
    assert report_to({}) == "none" and report_to({"report_to": "none"}) == "none"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="needs the tensorboard package: pip install tensorboard"):
        report_to({"report_to": "tensorboard"})
    monkeypatch.setenv(REPORT_TO_ENV, "wandb")
    with pytest.raises(ConfigError, match="pip install wandb"):
        report_to({"report_to": "none"})
    monkeypatch.setenv(REPORT_TO_ENV, "mlflow")
    with pytest.raises(ConfigError, match="must be none, tensorboard or wandb"):
        report_to({})


def test_training_arguments_name_the_tracker_run_and_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(REPORT_TO_ENV, raising=False)
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", "before")  # restored after the test
    run = tmp_path / "results" / "m" / "science" / "alr" / "seed0"
    assert training_tracking(run) == ("science/alr/seed0", str(run / "tensorboard"))
    assert training_tracking(tmp_path / "si.safetensors") == ("importance/si", str(tmp_path / "si_tensorboard"))
    args = training_arguments(TRAIN, 0, str(tmp_path / "scratch"), tracking=training_tracking(run))
    assert args.report_to == [] and args.run_name == "science/alr/seed0"
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: True if name == "tensorboard" else real_find_spec(name)
    )
    monkeypatch.setenv(REPORT_TO_ENV, "tensorboard")
    args = training_arguments(TRAIN, 0, str(tmp_path / "scratch"), tracking=training_tracking(run))
    assert args.report_to == ["tensorboard"]
    assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(run / "tensorboard")
