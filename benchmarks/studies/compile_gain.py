"""Does `torch.compile` pay in a model job? `python benchmarks/studies/compile_gain.py [MODEL_DIR]`.

On one thread (as the pipeline's model jobs run), the model as the evaluation jobs run it (float32,
no gradients, log-softmax over the vocabulary) at the shapes they meet: multiple-choice batches of 16
requests padded to several lengths, and general-text NLL batches of at most 512 tokens. Each shape runs
eager, then compiled (`torch.compile`, inductor, the default dynamic-shape policy). Then a LoRA training
step (q_proj and v_proj, r 8, 8 x 40 tokens), eager and compiled. For each: the compiled pass's first
call (compilation included) and its steady time against eager, and the largest difference in
log-probabilities. A job pays the compilation once per process and per new shape; it gains only if its
passes save more than that. The inductor cache is a fresh temporary folder unless TORCHINDUCTOR_CACHE_DIR
is set (set it and run twice to see a warm cache's compilation time).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

EVAL_SHAPES = [(16, 24), (16, 31), (16, 40), (16, 57), (4, 128), (8, 64), (1, 300)]


def timed(step) -> tuple[float, object]:
    start = time.perf_counter()
    out = step()
    return time.perf_counter() - start, out


def eval_rows(model_dir: str) -> list[tuple[str, float, float, float, float]]:
    """Per shape: (name, eager s, compiled first call s, compiled steady s, max |log-prob difference|)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    compiled = torch.compile(model)
    gen = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    rows = []
    with torch.no_grad():
        for batch, length in EVAL_SHAPES:
            ids = torch.randint(3, vocab, (batch, length), generator=gen)

            def step(m, ids=ids):
                return torch.log_softmax(m(input_ids=ids).logits, dim=-1)

            step(model)
            eager, reference = timed(lambda: step(model))
            first, _ = timed(lambda: step(compiled))
            steady, out = timed(lambda: step(compiled))
            rows.append((f"eval {batch} x {length}", eager, first, steady, float((out - reference).abs().max())))
            print(f"  {rows[-1][0]} done", flush=True)
    return rows


def train_row(model_dir: str) -> tuple[str, float, float, float, float]:
    """The same row for a LoRA training step (forward, backward, AdamW): the second step's time and
    loss, eager and compiled, from the same start (the compiled first step includes compilation)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    def tuned():
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        model = get_peft_model(base, LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"]))
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        return model, optimizer

    batch = torch.randint(3, 49_000, (8, 40), generator=torch.Generator().manual_seed(1))

    def stepper(model, optimizer, forward):
        def step():
            loss = forward(input_ids=batch, labels=batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            return float(loss)

        return step

    eager_model, eager_opt = tuned()
    eager_step = stepper(eager_model, eager_opt, eager_model)
    eager_step()
    eager, eager_loss = timed(eager_step)
    model, optimizer = tuned()
    compiled_step = stepper(model, optimizer, torch.compile(model))
    first, _ = timed(compiled_step)
    steady, loss = timed(compiled_step)
    return ("LoRA training step 8 x 40", eager, first, steady, abs(loss - eager_loss))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir", nargs="?", default="resources/models/smollm2-135m-instruct")
    args = p.parse_args(argv)
    if not (Path(args.model_dir) / "config.json").is_file():
        raise SystemExit(f"compile_gain: no model in {args.model_dir}; run `make run` first or name a model folder")
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="alr-inductor-"))
    torch.set_num_threads(1)
    rows = eval_rows(args.model_dir) + [train_row(args.model_dir)]
    print(f"inductor cache: {os.environ['TORCHINDUCTOR_CACHE_DIR']}")
    print("| pass | eager (s) | compiled, first call (s) | compiled, steady (s) | eager / steady | max difference |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, eager, first, steady, diff in rows:
        print(f"| {name} | {eager:.3f} | {first:.1f} | {steady:.3f} | {eager / steady:.2f}x | {diff:.1e} |")
    eager, first, steady = (sum(r[i] for r in rows[:-1]) for i in (1, 2, 3))
    print(
        f"evaluation shapes together: eager {eager:.2f} s, compiled steady {steady:.2f} s, "
        f"compilation {first - steady:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
