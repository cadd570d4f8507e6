"""Config templates cannot run code. The `doc_to_*` templates render in jinja2's immutable sandbox:
`alr check-config` (like every command, on loading the config) refuses a template the sandbox
refuses, naming its key; `alr prepare-data` refuses one that only a real record reaches. Each exits
2 without a traceback, and the shell command of the payload never runs."""

import copy
import json

import pytest
import yaml

from alr.cli import main
from alr.config import validate_config


def _payload(marker) -> str:
    """The template that ran a shell command when templates rendered in a plain jinja2.Environment."""
    return "{{ cycler.__init__.__globals__.os.popen('touch " + str(marker) + "').read() }}"


def _error(capsys, command) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"alr {command}: error:" in err, err
    return err


@pytest.mark.parametrize(
    "key, edit",
    [
        (
            "data.domains.science.doc_to_text",
            lambda data, payload: data["domains"]["science"].update(doc_to_text=payload),
        ),
        (
            "data.domains.science.doc_to_choice.1",
            lambda data, _: data["domains"]["science"].update(
                doc_to_choice=["{{correct_answer}}", "{{ ''.__class__.__mro__ }}"]
            ),
        ),
        (
            "data.general.text.sources.encyclopedic.doc_to_text",
            lambda data, payload: data["general"]["text"]["sources"]["encyclopedic"].update(doc_to_text=payload),
        ),
    ],
)
def test_check_config_refuses_a_template_the_sandbox_refuses(tiny_cfg, tmp_path, capsys, key, edit):
    marker = tmp_path / "ran"
    cfg = copy.deepcopy(tiny_cfg)
    edit(cfg["data"], _payload(marker))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["check-config", "--replace-workflow-config", str(path)]) == 2
    err = _error(capsys, "check-config")
    assert f"config key '{key}': the template sandbox refused it (access to attribute '__" in err
    assert "rewrite it to read only the record's fields" in err
    assert not marker.exists()


def test_prepare_data_refuses_the_payload_before_reading_anything(tiny_cfg, tmp_path, capsys):
    marker = tmp_path / "ran"
    cfg = copy.deepcopy(tiny_cfg)
    cfg["data"]["general"]["tasks"]["arc_easy"]["doc_to_target"] = _payload(marker)
    assert main(["prepare-data", "--config", json.dumps(cfg), "--out", str(tmp_path / "data")]) == 2
    assert "config key 'data.general.tasks.arc_easy.doc_to_target': the template sandbox refused it" in _error(
        capsys, "prepare-data"
    )
    assert not marker.exists() and not (tmp_path / "data").exists()


def test_prepare_data_refuses_a_template_only_a_real_record_reaches(tiny_cfg, tmp_path, capsys):
    """The probe record's `choices` is a string, so the check stops at `choices.text[0]` and passes the
    config; arc_easy's records have that field, so rendering reaches the payload, which the sandbox
    refuses there: one line naming the dataset and key."""
    marker = tmp_path / "ran"
    cfg = copy.deepcopy(tiny_cfg)
    cfg["data"]["general"]["tasks"]["arc_easy"]["doc_to_text"] = "{{ choices.text[0] }}" + _payload(marker)
    validate_config(copy.deepcopy(cfg))
    assert main(["prepare-data", "--config", json.dumps(cfg), "--out", str(tmp_path / "data")]) == 2
    err = _error(capsys, "prepare-data")
    line = next(line for line in err.splitlines() if "error:" in line)
    assert line.startswith(
        "alr prepare-data: error: doc_to_text of dataset 'arc_easy': the template sandbox refused it (access to "
        "attribute '__init__'"
    )
    assert not marker.exists() and not (tmp_path / "data").exists()
