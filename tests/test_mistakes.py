"""User mistakes, tried as a user would make them: each one exits non-zero with one message that
names the key, file or value and the fix, before any model loads, and without a traceback.

`CASES` is also the "Common mistakes" list of docs/configuration.md (a test checks that they agree)."""

import copy
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import alr.evaluate.run as evaluate_mod
import alr.finetune.run as finetune_mod
import alr.importance.record as record_mod
from alr.cli import build_parser, main
from alr.config import load_config
from alr.core.errors import ConfigError
from alr.methods.registry import METHODS
from tests.tiny import REPO


@pytest.fixture(scope="module")
def importance_dir(tiny_config_file, tiny_model, tiny_data, tmp_path_factory):
    """A phase-1 SI file (and its si_adapter/) of the session's tiny model, made with the CLI."""
    out = tmp_path_factory.mktemp("mistakes") / "importance"
    assert (
        main(
            [
                "importance",
                "--config",
                str(tiny_config_file),
                "--model-dir",
                str(tiny_model),
                "--data-dir",
                str(tiny_data),
                "--out",
                str(out / "si.safetensors"),
            ]
        )
        == 0
    )
    return out


@pytest.fixture
def built(tiny_model, tiny_data, importance_dir, tiny_cfg, tmp_path):
    """Paths the cases use: t.model, t.data, t.importance, and t.work (this test's own folder)."""
    return SimpleNamespace(model=tiny_model, data=tiny_data, importance=importance_dir, work=tmp_path), tiny_cfg


@pytest.fixture
def no_model_load(monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("the model was loaded before the bad input was refused")

    for module, name in ((finetune_mod, "load_base"), (record_mod, "load_base"), (evaluate_mod, "load_tuned")):
        monkeypatch.setattr(module, name, forbidden)


def _with(cfg, edit):
    c = copy.deepcopy(cfg)
    edit(c)
    return c


def _finetune(tmp, cfg, method="lora", *extra):
    return [
        "finetune",
        "--config",
        json.dumps(cfg),
        "--model-dir",
        str(tmp.model),
        "--data-dir",
        str(tmp.data),
        "--domain",
        "science",
        "--run-name",
        method,
        "--seed",
        "0",
        "--out",
        str(tmp.work / "out"),
        *extra,
    ]


def _si(tmp):
    return str(tmp.importance / "si.safetensors")


def _file(tmp, name, text):
    (tmp.work / name).write_text(text)
    return str(tmp.work / name)


def _folder(tmp, name, file):
    """A user's folder holding `file`."""
    (tmp.work / name).mkdir()
    (tmp.work / name / file).write_text("mine\n")
    return str(tmp.work / name)


NO_TEXT = "{encyclopedic: null, howto: null, narrative: null}"  # every general-text source of the default


def _truncated(tmp, source: Path, keep: tuple[str, ...] = ()) -> Path:
    """A copy of `source` (a file, with the sidecar files named in `keep` beside it) cut to half its size, in
    this test's folder."""
    folder = tmp.work / "truncated"
    folder.mkdir(exist_ok=True)
    for name in keep:
        shutil.copy(source.parent / name, folder / name)
    data = source.read_bytes()
    (folder / source.name).write_bytes(data[: len(data) // 2])
    return folder / source.name


def _evaluate(tmp, cfg, *extra):
    argv = ["evaluate", "--config", json.dumps(cfg), "--model-dir", str(tmp.model), "--data-dir", str(tmp.data)]
    return [*argv, "--domains", "science", "--out", str(tmp.work / "eval.json"), *extra]


# (case, argv from (tmp, cfg), what the message must contain). The case names are docs/configuration.md's.
CASES = [
    (
        "LoRA target typo",
        lambda t, c: _finetune(t, _with(c, lambda x: x["lora"].update(targets=["q_proj", "vproj"]))),
        "'vproj' matches no module of the model",
    ),
    (
        "importance file of another estimator",
        lambda t, c: _finetune(t, c, "mas_lora", "--importance", _si(t)),
        "holds 'si' importance, but this method uses 'mas'",
    ),
    (
        "importance file made with other phase-1 settings",
        lambda t, c: _finetune(t, _with(c, lambda x: x["importance"].update(xi=1e-3)), "alr", "--importance", _si(t)),
        "importance.xi: 1e-06 in the file, 0.001 now",
    ),
    (
        "--importance for a method that uses none",
        lambda t, c: _finetune(t, c, "lora", "--importance", _si(t)),
        "method 'lora' uses no importance file; drop --importance",
    ),
    (
        "--init-adapter that would be ignored",
        lambda t, c: _finetune(t, c, "lora", "--init-adapter", str(t.importance / "si_adapter")),
        "--init-adapter is read only by LoRA methods with regularize.phase2_init: phase1",
    ),
    (
        "YAML syntax error in a config file",
        lambda t, c: ["check-config", _file(t, "bad.yaml", "train:\n  lr: [1, 2\nseeds: [0]\n")],
        "bad.yaml:3:6: YAML syntax error",
    ),
    (
        "config file that does not exist",
        lambda t, c: ["check-config", str(t.work / "nope.yaml")],
        "nope.yaml does not exist",
    ),
    (
        "evaluating a domain that is not configured",
        lambda t, c: [
            "evaluate",
            "--config",
            json.dumps(c),
            "--model-dir",
            str(t.model),
            "--data-dir",
            str(t.data),
            "--domains",
            "biology",
            "--out",
            str(t.work / "eval.json"),
        ],
        "--domains 'biology' has no dataset under data.domains",
    ),
    (
        "--delta-scale without --weights",
        lambda t, c: [
            "evaluate",
            "--config",
            json.dumps(c),
            "--model-dir",
            str(t.model),
            "--data-dir",
            str(t.data),
            "--domains",
            "science",
            "--delta-scale",
            "0.5",
            "--out",
            str(t.work / "eval.json"),
        ],
        "without --weights (the base model) it would do nothing",
    ),
    (
        "the general tasks alone on the valid split",
        lambda t, c: [
            "evaluate",
            "--config",
            json.dumps(c),
            "--model-dir",
            str(t.model),
            "--data-dir",
            str(t.data),
            "--domains",
            "science",
            "--split",
            "valid",
            "--general-tasks",
            "only",
            "--out",
            str(t.work / "eval.json"),
        ],
        "--general-tasks only scores the general multiple-choice tasks of the test split",
    ),
    (
        "the JSON sidecar given as the importance file",
        lambda t, c: _finetune(t, c, "alr", "--importance", str(t.importance / "si.json")),
        "looks like the sidecar of",
    ),
    (
        "a folder given as the importance file",
        lambda t, c: _finetune(t, c, "alr", "--importance", str(t.importance / "si_adapter")),
        "si_adapter is a folder; give the importance file itself",
    ),
    (
        "a partial config for a command",
        lambda t, c: _finetune(t, {"train": c["train"], "model": c["model"]}, "alr", "--importance", _si(t)),
        "the config has no 'lora', 'regularize.phase2_init'",
    ),
    (
        "a hub dataset pointing at local files without data_files",
        lambda t, c: [
            "check-config",
            "--replace-workflow-config",
            _file(
                t,
                "hub.yaml",
                yaml.safe_dump(
                    _with(
                        c,
                        lambda x: x["data"]["domains"].update(
                            science={"source": "hub", "dataset_path": "json", "format": "sciq"}
                        ),
                    )
                ),
            ),
        ],
        "dataset_path 'json' reads local files; name them in dataset_kwargs",
    ),
    (
        "continuing phase 1's optimizer without its adapter",
        lambda t, c: [
            "check-config",
            "--replace-workflow-config",
            _file(t, "opt.yaml", yaml.safe_dump(_with(c, lambda x: x["regularize"].update(phase2_optimizer="phase1")))),
        ],
        "'phase1' continues phase 1's optimizer state, so it needs phase2_init: phase1",
    ),
    (
        "a method name typo on the command line",
        lambda t, c: _finetune(t, c, "ewc-lora"),
        "did you mean 'ewc_lora'?); methods: base, lora",
    ),
    (
        "a method name typo in the config",
        lambda t, c: [
            "check-config",
            "--replace-workflow-config",
            _file(t, "typo.yaml", yaml.safe_dump(_with(c, lambda x: x.update(methods=["LoRA"])))),
        ],
        "'LoRA' is not one of",
    ),
    (
        "a config template that reaches Python's internals",
        lambda t, c: [
            "check-config",
            "--replace-workflow-config",
            _file(
                t,
                "tpl.yaml",
                yaml.safe_dump(
                    _with(c, lambda x: x["data"]["domains"]["science"].update(doc_to_text="{{ ''.__class__.__mro__ }}"))
                ),
            ),
        ],
        "config key 'data.domains.science.doc_to_text': the template sandbox refused it (access to attribute "
        "'__class__' of 'str' object is unsafe); rewrite it to read only the record's fields",
    ),
    (
        "a domain that is also a general task",
        lambda t, c: ["check-config", _file(t, "physical.yaml", "domains: [science, physical]\n")],
        "general task 'piqa' reads the same file as domain 'physical'",
    ),
    (
        "every general-text source switched off",
        lambda t, c: [
            "check-config",
            _file(t, "notext.yaml", f"data: {{general: {{text: {{sources: {NO_TEXT}}}}}}}\n"),
        ],
        "every source is switched off (null)",
    ),
    (
        "a negative strength",
        lambda t, c: ["check-config", _file(t, "negative.yaml", "regularize: {lambda: -1}\n")],
        "config key 'regularize.lambda': -1 is less than the minimum of 0",
    ),
    (
        "an overlay giving the model another source type",
        lambda t, c: ["check-config", _file(t, "local.yaml", "model: {source: {type: local, path: /models/mine}}\n")],
        "a 'local' source keeps the other keys of the source it replaces",
    ),
    (
        "a truncated importance file",
        lambda t, c: _finetune(t, c, "alr", "--importance", str(_truncated(t, Path(_si(t)), keep=("si.json",)))),
        "is not a readable safetensors file (truncated",
    ),
    (
        "a truncated adapter",
        lambda t, c: _evaluate(
            t,
            c,
            "--weights",
            str(
                _truncated(
                    t, t.importance / "si_adapter" / "adapter_model.safetensors", keep=("adapter_config.json",)
                ).parent
            ),
        ),
        "is not a readable safetensors file (truncated",
    ),
    (
        "a general task given as a domain",
        lambda t, c: [a if a != "science" else "basic_logic" for a in _finetune(t, c)],
        "--domain 'basic_logic' is a general task (test items only), not a domain",
    ),
    (
        "training the base model",
        lambda t, c: _finetune(t, c, "base"),
        "method 'base' does not train, so `alr finetune` has nothing to do: `alr evaluate` without --weights",
    ),
    (
        "training wise_ft",
        lambda t, c: _finetune(t, c, "wise_ft"),
        "`alr evaluate --weights <lora run>/model --delta-scale <beta>` scores it from lora's weights",
    ),
    (
        "a misspelt domain",
        lambda t, c: [a if a != "science" else "sciense" for a in _finetune(t, c)],
        "(did you mean 'science'?) (built: ",
    ),
    (
        "an output folder alr did not write",
        lambda t, c: ["prepare-model", "--config", json.dumps(c), "--out", _folder(t, "mine", "precious.txt")],
        "holds precious.txt, which `alr prepare-model` did not write; alr replaces only an empty folder or its own",
    ),
]


@pytest.mark.parametrize("case, argv, expected", CASES, ids=[c[0] for c in CASES])
def test_mistake_is_refused_with_a_message(built, no_model_load, capsys, case, argv, expected):
    tmp, cfg = built
    code = main(argv(tmp, cfg))
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 4, err  # one short message, not a dump
    assert not (tmp.work / "out").exists()  # nothing started training


def test_docs_list_every_case_with_its_message():
    """docs/configuration.md "Common mistakes" lists each case as `- **case**: `message``, the message
    wrapped over indented lines (joined here with one space, as markdown renders them)."""
    text = (REPO / "docs" / "configuration.md").read_text()
    section = text.split("## Common mistakes", 1)[1].split("\n## ", 1)[0]
    items = re.split(r"\n(?=- )", section)
    rows = dict(
        m.groups()
        for item in items
        if (m := re.match(r"- \*\*(.+?)\*\*: (.*)", " ".join(line.strip() for line in item.splitlines())))
    )
    for case, _, expected in CASES:
        assert case in rows, case
        assert expected in rows[case], case


def test_yaml_numbers_in_exponent_form_are_numbers(tmp_path):
    """PyYAML reads `3e-4` (no dot) as a string; YAML 1.2 and a reader of the config mean 3e-4."""
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 3e-4\n  weight_decay: 1E-2\nfisher:\n  lambda: 5e3\nregularize:\n  lambda: 2e0\n")
    raw = yaml.safe_load(path.read_text())
    assert raw["train"]["lr"] == "3e-4"  # what PyYAML (and Snakemake's loader) gives
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    default["train"].update(raw["train"])
    default["fisher"].update(raw["fisher"])
    default["regularize"].update(raw["regularize"])
    cfg = load_config(json.dumps(default))
    assert cfg["train"]["lr"] == 3e-4 and cfg["train"]["weight_decay"] == 0.01 and cfg["fisher"]["lambda"] == 5000.0
    assert cfg["regularize"]["lambda"] == 2.0  # inside a oneOf (a number or a list)
    default["train"]["lr"] = "fast"
    with pytest.raises(ConfigError, match="train.lr"):
        load_config(json.dumps(default))


def test_every_command_and_flag_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        assert command.description, name
        for action in command._actions:
            assert action.help, (name, action.dest)
    text = sub.choices["finetune"].format_help()
    for name, spec in METHODS.items():
        assert (f"  {name} " in text) == spec.trains, name
        if spec.trains:
            assert spec.description in re.sub(r"\s+", " ", text), name
