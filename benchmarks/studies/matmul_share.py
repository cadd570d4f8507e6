"""How much of a model job's compute is matrix products: `python benchmarks/studies/matmul_share.py [MODEL_DIR]`.

On one thread (as the pipeline's model jobs run), with PyTorch's profiler, three passes of the model
as the jobs run them: an evaluation forward pass at a multiple-choice shape (16 x 32 tokens, the head on
every position, as lm-eval scores), one at the general-text NLL's shape (one text of 300 tokens), and a
LoRA training step (q_proj and v_proj, r 8; 8 x 40 tokens; forward, backward, AdamW step). For each:
the share of its time in matrix products (aten::mm, addmm, bmm, baddbmm) and their throughput, against
a plain float32 product of the model's MLP shape in the same process (the core's practical peak). What
is not a matrix product is the most any fusion, compiler or rewrite at float32 could save; what is,
only fewer products or a cheaper number format. Default model: resources/models/smollm2-135m-instruct.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def product_peak(hidden: int, inner: int, rows: int = 512, repeats: int = 30) -> float:
    """GFLOP/s of a float32 (rows x hidden) @ (hidden x inner) product, the MLP's shape."""
    a, w = torch.randn(rows, hidden), torch.randn(inner, hidden)
    torch.nn.functional.linear(a, w)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.nn.functional.linear(a, w)
    return 2 * rows * hidden * inner * repeats / (time.perf_counter() - start) / 1e9


def profiled(step) -> tuple[float, float, float]:
    """(seconds, seconds in matrix products, their GFLOP) of one call of `step`, after one warm-up call."""
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        start = time.perf_counter()
        step()
        seconds = time.perf_counter() - start
    events = [e for e in prof.key_averages() if e.key in PRODUCTS]
    return seconds, sum(e.self_cpu_time_total for e in events) / 1e6, sum(e.flops for e in events) / 1e9


def steps(model_dir: str) -> dict:
    """The three passes, each a closure over its own model and batch."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    def load():
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)

    gen = torch.Generator().manual_seed(0)
    evaluator = load().eval()
    vocab = evaluator.config.vocab_size
    mc, text = torch.randint(3, vocab, (16, 32), generator=gen), torch.randint(3, vocab, (1, 300), generator=gen)
    tuned = get_peft_model(load(), LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"]))
    batch = torch.randint(3, vocab, (8, 40), generator=gen)
    optimizer = torch.optim.AdamW([p for p in tuned.parameters() if p.requires_grad], lr=1e-3)

    def forward(ids):
        def step():
            with torch.no_grad():
                torch.log_softmax(evaluator(input_ids=ids).logits, dim=-1)

        return step

    def train_step():
        tuned(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return {
        "evaluation, 16 x 32 (multiple choice)": forward(mc),
        "evaluation, 1 x 300 (text NLL)": forward(text),
        "LoRA training step, 8 x 40": train_step,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir", nargs="?", default="resources/models/smollm2-135m-instruct")
    args = p.parse_args(argv)
    if not (Path(args.model_dir) / "config.json").is_file():
        raise SystemExit(f"matmul_share: no model in {args.model_dir}; run `make run` first or name a model folder")
    torch.set_num_threads(1)
    todo = steps(args.model_dir)
    from transformers import AutoConfig

    shape = AutoConfig.from_pretrained(args.model_dir)
    peak = product_peak(shape.hidden_size, shape.intermediate_size)
    print(f"plain float32 product ({shape.hidden_size} x {shape.intermediate_size}): {peak:.0f} GFLOP/s")
    for name, step in todo.items():
        seconds, in_products, gflop = profiled(step)
        print(
            f"{name}: {seconds:.2f} s, matrix products {in_products:.2f} s ({in_products / seconds:.0%}) "
            f"at {gflop / in_products:.0f} GFLOP/s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
