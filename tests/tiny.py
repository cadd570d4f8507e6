"""Tiny, deterministic stand-ins built by the tests themselves: a random Llama with a byte-level BPE
tokenizer, a miniature BIG-bench sdist with the same layout as the real one (gold answer listed
first, as in the real task files), and a main results table of made-up scores."""
from __future__ import annotations

import copy
import io
import json
import tarfile
from pathlib import Path

import yaml

from alr.io import sha256_file

REPO = Path(__file__).resolve().parents[1]
GENERAL = ["general_knowledge", "social_iqa"]
BB_TASKS = GENERAL + ["physics"]
TEXT_TASKS = ["gem/xsum", "gem/wikilingua_en", "paragraph_segmentation"]  # the default's general text sources
WORDS = ("alpha beta gamma delta energy force mass charge field water carbon oxygen river city king queen "
         "music horse legs four two paris france answer question which what").split()


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
    docs = [{"input": sep.join(f"The {WORDS[(i + k) % len(WORDS)]} of {task} text {i} was in the {WORDS[(5 * i + k) % len(WORDS)]} "
                               f"and {WORDS[(2 * i + 3 * k) % len(WORDS)]} is sentence {k}." for k in range(4)),
             "target": "summary"} for i in range(n)]
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


def make_tiny_model(path: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = [" ".join(WORDS)] * 4 + ["Question: Answer: which goes with"] * 4
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    LlamaForCausalLM(cfg).save_pretrained(path)
    fast.save_pretrained(path)
    return path


def tiny_config(tmp: Path) -> dict:
    """The default config shrunk to seconds: tiny model, tiny data, 2 steps per phase, 2 domains, lora + alr."""
    with open(REPO / "config" / "config.yaml") as fh:
        cfg = copy.deepcopy(yaml.safe_load(fh))
    archive = make_bigbench_archive(tmp / "bigbench-1.0.0.tar.gz")
    cfg["domains"] = ["physics", "medical"]
    cfg["model"] = {"name": "tiny-llama", "dtype": "float32",
                    "source": {"type": "local", "path": str(make_tiny_model(tmp / "tiny-llama-src"))}}
    cfg["data"].update(test_size=6, train_size=10, valid_size=2)
    cfg["data"]["general"]["text"].update(test_size=4, valid_size=2, train_size=12)
    cfg["data"]["bigbench"].update(archive=str(archive), sha256=sha256_file(archive))
    cfg["data"]["general"]["tasks"] = {t: {"source": "bigbench", "task": t} for t in GENERAL}
    cfg["data"]["domains"] = {"physics": {"source": "bigbench", "task": "physics"},
                              "medical": {"source": "icd10cm", "n_items": 20, "n_choices": 4}}
    cfg["methods"] = ["lora", "alr"]
    cfg.pop("method_domains", None)
    cfg["train"].update(batch_size=4, max_steps=2, max_length=64, lr=1e-2)
    cfg["importance"].update(samples=8, max_steps=2)
    cfg["fisher"].update(samples=4, max_length=32)
    cfg["mas"].update(samples=4, max_length=32)
    cfg["eval"].update(batch_size=4, phase1_texts=4)
    return cfg


TABLE_DOMAINS = ("physics", "medical")


def main_table(methods: list[str]):
    """results/tables/main.csv with made-up scores (fixed seed): base + methods on TABLE_DOMAINS, every
    method but base and lora with a CI against lora."""
    import numpy as np
    import pandas as pd

    from alr.report.tables import COLUMNS, VS_BASE

    rng = np.random.default_rng(0)
    rows = []
    for d in TABLE_DOMAINS:
        for m in ["base"] + methods:
            row = dict.fromkeys(COLUMNS, np.nan)
            row.update(domain=d, method=m, n_seeds=1 if m == "base" else 2, domain_score=rng.uniform(0.3, 0.6),
                       domain_stderr=0.04, domain_score_sd=0.02, general_score=rng.uniform(0.3, 0.4),
                       general_stderr=0.02, general_score_sd=0.01, general_nll=3.0)
            for measure in VS_BASE:
                value = 0.0 if m == "base" else rng.uniform(-0.02, 0.1)
                row.update({measure: value, f"{measure}_lo": value - 0.01, f"{measure}_hi": value + 0.01,
                            f"{measure}_se": 0.005})
            if m not in ("base", "lora"):
                row.update(reference="lora", d_general=0.01, d_general_lo=-0.01, d_general_hi=0.03,
                           d_domain=0.02, d_domain_lo=-0.02, d_domain_hi=0.05)
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
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", "2",
           "--configfile", str(cfg_path), "--replace-workflow-config", *extra]
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
    alr.trainer.no_final_checkpoint_callback, it kills a fine-tune mid-run)."""
    from transformers import TrainerCallback

    class KillAtStep(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise Killed

    return KillAtStep
