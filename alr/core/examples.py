"""Canonical records (docs/files.md) <-> prompts, validation, and tokenisation for training.

Multiple choice: {"id", "question", "choices": [...], "label": int}; text: {"id", "text"}.
The training prompt is the same cloze format lm-eval scores (`PROMPT` + " " + choice), so the
domain tune teaches exactly what the domain evaluation measures.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

PROMPT = "Question: {question}\nAnswer:"
TARGET_DELIMITER = " "  # lm-eval's default between context and continuation


class DataError(ValueError):
    """An input the user's files hold that cannot be used: malformed canonical data (the message names
    the file and line), data the config asks for that its source cannot give, or result files
    (eval.json, tables) that do not fit together."""


def _check_mc(rec: dict, where: str) -> None:
    for key, typ in (("id", str), ("question", str), ("choices", list), ("label", int)):
        if not isinstance(rec.get(key), typ) or isinstance(rec.get(key), bool):
            raise DataError(f"{where}: field {key!r} must be {typ.__name__}, got {rec.get(key)!r}")
    if len(rec["choices"]) < 2 or not all(isinstance(c, str) and c for c in rec["choices"]):
        raise DataError(f"{where}: 'choices' must hold at least two non-empty strings")
    if not 0 <= rec["label"] < len(rec["choices"]):
        raise DataError(f"{where}: label {rec['label']} out of range for {len(rec['choices'])} choices")


def _check_text(rec: dict, where: str) -> None:
    if not isinstance(rec.get("id"), str) or not isinstance(rec.get("text"), str) or not rec["text"]:
        raise DataError(f"{where}: a text record needs string fields 'id' and non-empty 'text'")


def read_records(path: str | Path, kind: str = "auto") -> list[dict]:
    """Read and validate a canonical JSONL file; `kind` is "mc", "text" or "auto" (from the first line)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist; build it with `alr prepare-data` (or `snakemake prepare_data`)"
        )
    rows: list[dict] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise DataError(f"{where}: expected a JSON object")
            if kind == "auto":
                kind = "mc" if "choices" in rec else "text"
            (_check_mc if kind == "mc" else _check_text)(rec, where)
            rows.append(rec)
    if not rows:
        raise DataError(f"{path}: the split is empty")
    return rows


def mc_prompt(rec: dict) -> str:
    return PROMPT.format(question=rec["question"])


def mc_to_pair(rec: dict) -> tuple[str, str]:
    """(prompt, gold continuation) of a multiple-choice record."""
    return mc_prompt(rec), TARGET_DELIMITER + rec["choices"][rec["label"]]


def leading_special_ids(tokenizer) -> list[int]:
    """The ids a tokenizer puts before every text by default: Llama-3's BOS, none for GPT-2-style
    tokenizers such as SmolLM2's. Training, the text NLL and the KL term put them first too, so a
    model sees the first token as lm-eval shows it when it scores a continuation (lm-eval encodes the
    context with the tokenizer's defaults)."""
    full = tokenizer("a")["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    head = len(full) - len(plain)
    return list(full[:head]) if head > 0 and list(full[head:]) == list(plain) else []


def encode_texts(texts: Iterable[str], tokenizer, max_length: int) -> list[list[int]]:
    """Each text's ids after the tokenizer's leading special ids, at most max_length in all."""
    lead = leading_special_ids(tokenizer)
    return [(lead + tokenizer(t, add_special_tokens=False)["input_ids"])[:max_length] for t in texts]


def tokenize_pairs(pairs: Iterable[tuple[str, str]], tokenizer, max_length: int, loss_on: str = "answer") -> list[dict]:
    """Token ids and labels for causal-LM training.

    `loss_on="answer"` masks the prompt tokens (label -100) so the loss is the answer's cross-entropy;
    `"all"` trains on every token. Prompt and answer are tokenised separately and concatenated, the
    same split lm-eval uses when it scores a continuation; the tokenizer's leading special ids (a BOS)
    come first, as lm-eval encodes the context. An EOS token ends each example. Over-long examples lose
    prompt tokens from the left (after the BOS), so the answer is always kept.
    """
    if loss_on not in {"answer", "all"}:
        raise ValueError(f"loss_on must be 'answer' or 'all', got {loss_on!r}")
    lead = leading_special_ids(tokenizer)
    out = []
    for prompt, answer in pairs:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a = tokenizer(answer, add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            a = a + [tokenizer.eos_token_id]
        a = a[: max_length - 1 - len(lead)]
        room = max_length - len(a) - len(lead)
        p = lead + (p[len(p) - room :] if len(p) > room else p)  # keep the answer
        labels = ([-100] * len(p) if loss_on == "answer" else list(p)) + a
        out.append({"input_ids": p + a, "labels": labels})
    return out


def tokenize_texts(texts: Iterable[str], tokenizer, max_length: int) -> list[dict]:
    return [
        {"input_ids": ids, "labels": list(ids)} for ids in encode_texts(texts, tokenizer, max_length) if len(ids) > 1
    ]
