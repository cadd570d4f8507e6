"""The general-text NLL, the forgetting measure, scored as lm-eval's `loglikelihood_rolling` scores a text.

Every token of a text's plain encoding is predicted once: the first from the prefix token (the
tokenizer's BOS, or its EOS where it has none, as lm-eval's HFLM chooses), the rest in lm-eval's own
rolling windows of at most `max_length` input tokens (`lm_eval.utils.get_rolling_token_windows`). A
text's NLL is its summed negative log-likelihood over its number of tokens (nats per token); the
general NLL is the mean over texts, each weighing the same.

The same number comes out of the `lm_eval` command line: `alr tasks --model-dir` writes the task
`alr_general_nll` (the texts, each with its token count) and the metric hook beside it; scored with
`--model_args ...,max_length=<eval.nll_max_length>,add_bos_token=False` its `nll` is eval.json's
`general.nll` (tests/test_pipeline.py checks this to 1e-6). alr scores the windows itself, batched by
length under a token budget, because lm-eval's fixed-count batches of long padded windows cost more
on a CPU (370 short texts: 20-25 s at 512 tokens per batch, 29-33 s at 4096).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import yaml

from ..core.examples import DataError
from ..core.io import write_jsonl
from . import nll_task_metric

NLL_TASK = "alr_general_nll"


def prefix_token_id(tok) -> int:
    """The token a text's first token is predicted from: lm-eval's HFLM rule (BOS, else EOS)."""
    return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id


def text_token_ids(tok, text: str) -> list[int]:
    """A text's scored tokens: its encoding without special tokens (lm-eval's with add_bos_token=False)."""
    return tok(text, add_special_tokens=False)["input_ids"]


def text_windows(tok, text: str, max_length: int) -> list[tuple[list[int], list[int]]]:
    """(input ids, predicted ids) per rolling window of a text: the predicted ids are the input's next
    tokens at its last positions, and together they are the text's tokens, each once."""
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    ids = text_token_ids(tok, text)
    if not ids:
        raise DataError(f"a general text has no tokens; nothing to score: {text!r}")
    windows = get_rolling_token_windows(ids, prefix_token_id(tok), max_length, 1)
    return [((context + predicted)[:-1], predicted) for context, predicted in map(make_disjoint_window, windows)]


def _token_batches(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Indices grouped by similar length so that each padded batch holds at most max_tokens tokens."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, current = [], []
    for i in order:
        if current and (len(current) + 1) * lengths[i] > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    return batches + ([current] if current else [])


def _window_nlls(model, tok, windows: list[tuple[list[int], list[int]]], max_tokens: int) -> list[float]:
    """Each window's summed NLL of its predicted ids (nats), batched by length and padded on the right."""
    import torch

    dev = next(model.parameters()).device
    sums = [0.0] * len(windows)
    with torch.no_grad():
        for batch in _token_batches([len(w[0]) for w in windows], max_tokens):
            width = max(len(windows[i][0]) for i in batch)
            input_ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            target = torch.full_like(input_ids, -100)
            for row, i in enumerate(batch):
                inp, predicted = windows[i]
                input_ids[row, : len(inp)] = torch.tensor(inp)
                mask[row, : len(inp)] = 1
                target[row, len(inp) - len(predicted) : len(inp)] = torch.tensor(predicted)
            logits = model(input_ids=input_ids.to(dev), attention_mask=mask.to(dev)).logits.float()
            nll = torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), target.to(dev), ignore_index=-100, reduction="none"
            )
            for row, i in enumerate(batch):
                sums[i] = float(nll[row].sum())
    return sums


def text_nll(model, tok, texts: list[str], max_length: int, max_tokens: int = 512) -> list[dict]:
    """Per text: its NLL (nats per token, every token scored) and its number of tokens."""
    per_text = [text_windows(tok, text, max_length) for text in texts]
    flat = [w for windows in per_text for w in windows]
    sums = iter(_window_nlls(model, tok, flat, max_tokens))
    out = []
    for windows in per_text:
        n = sum(len(predicted) for _, predicted in windows)
        out.append({"nll": sum(next(sums) for _ in windows) / n, "tokens": n})
    return out


def general_text_items(model, tok, records: list[dict], task_of, max_length: int) -> list[dict]:
    """Per-text NLL records {"task": task_of(record), "id", "nll", "tokens"} (paired across models by id)."""
    scored = text_nll(model, tok, [r["text"] for r in records], max_length)
    return [{"task": task_of(r), "id": r["id"], **s} for r, s in zip(records, scored)]


def nll_summary(items: list[dict]) -> dict:
    """The general NLL of per-text records: the mean over texts (each text weighs the same), its
    perplexity, and the same per task (source)."""

    def mean(rows):
        return sum(r["nll"] for r in rows) / len(rows)

    tasks = sorted({r["task"] for r in items})
    nll = mean(items)
    return {
        "nll": nll,
        "ppl": math.exp(nll),
        "texts": len(items),
        "tokens": sum(r["tokens"] for r in items),
        "sources": {t: mean([r for r in items if r["task"] == t]) for t in tasks},
    }


def write_nll_task(tok, records: list[dict], out_dir: str | Path) -> str:
    """Write the lm-eval task that scores `records` (the held-out general texts) as eval.json does: the
    texts with their token counts under `tok`, the task YAML, and the metric hook it names."""
    out_dir = Path(out_dir)
    data = out_dir / f"{NLL_TASK}.jsonl"
    write_jsonl(
        data,
        [
            {
                "id": r["id"],
                "source": r.get("source", "text"),
                "text": r["text"],
                "tokens": len(text_token_ids(tok, r["text"])),
            }
            for r in records
        ],
    )
    module = Path(nll_task_metric.__file__)
    shutil.copyfile(module, out_dir / module.name)
    config = {
        "task": NLL_TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
        "output_type": "loglikelihood_rolling",
        "test_split": "test",
        "doc_to_text": "",
        "doc_to_target": "{{text}}",
        "metric_list": [{"metric": "nll", "aggregation": "mean", "higher_is_better": False}],
        "metadata": {"version": 1.0},
    }
    header = (
        "# alr's general-text NLL (nats per token, mean over texts); score with\n"
        "# --model_args ...,max_length=<eval.nll_max_length>,add_bos_token=False\n"
    )
    hook = f"process_results: !function {module.stem}.process_results\n"
    (out_dir / f"{NLL_TASK}.yaml").write_text(header + yaml.safe_dump(config, sort_keys=False) + hook, encoding="utf-8")
    return NLL_TASK
