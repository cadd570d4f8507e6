"""What projecting only the scored positions onto the vocabulary saves in a real fine-tune.

    python benchmarks/studies/scored_head.py [--domain science] [--method lora] [--repeats 2]

Runs `alr.finetune.run.finetune` on the prepared default (resources/, after `make run`), one domain and
method, with the output head on the scored positions only (`alr.model.trainer.scored_positions_only`, the
pipeline's path) and on every position (the model's own full head), alternating which goes first,
`--repeats` times each. Prints the training loop's own time per run (train.json `wall_time_s`), the
median ratio, and the largest relative difference between the two adapters' weights.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
from pathlib import Path
from unittest import mock

import torch
from safetensors.torch import load_file

import alr.model.trainer
from alr.config import DEFAULT_CONFIG, load_config
from alr.core.io import read_json
from alr.finetune.run import finetune
from alr.methods.runs import resolve_run


def _run(cfg: dict, args, out: Path, full_head: bool) -> float:
    full = mock.patch.object(alr.model.trainer, "accepts_logits_to_keep", lambda model: False)
    with full if full_head else contextlib.nullcontext():
        finetune(resolve_run(cfg, args.method), args.model_dir, args.data_dir, args.domain, 0, out, None)
    return read_json(out / "train.json")["wall_time_s"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", default="resources/models/smollm2-135m-instruct")
    p.add_argument("--data-dir", default="resources/data")
    p.add_argument("--domain", default="science")
    p.add_argument("--method", default="lora", help="a method without importance (lora, kl_lora, ...)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="as the pipeline's jobs (MODEL_JOB_THREADS)")
    args = p.parse_args(argv)
    if not (Path(args.model_dir) / "config.json").is_file():
        raise SystemExit(f"scored_head: no model in {args.model_dir}; run `make run` first or pass --model-dir")
    torch.set_num_threads(args.threads)
    cfg = load_config(DEFAULT_CONFIG)
    cfg["train"]["checkpoint_steps"] = 0
    times: dict[str, list[float]] = {"scored": [], "full": []}
    with tempfile.TemporaryDirectory(prefix="alr-scored-head-") as tmp:
        for r in range(args.repeats):
            for mode in ("scored", "full") if r % 2 == 0 else ("full", "scored"):
                out = Path(tmp) / f"{mode}{r}"
                times[mode].append(_run(cfg, args, out, full_head=mode == "full"))
                print(f"repeat {r} {mode}: {times[mode][-1]:.1f} s", flush=True)
        a, b = (load_file(str(Path(tmp) / f"{m}0" / "model" / "adapter_model.safetensors")) for m in ("scored", "full"))
        diff = max(float((a[k] - b[k]).norm() / b[k].norm()) for k in b)
    ratio = statistics.median(times["scored"]) / statistics.median(times["full"])
    print(
        f"{args.domain}/{args.method}: scored positions {statistics.median(times['scored']):.1f} s, "
        f"every position {statistics.median(times['full']):.1f} s (median of {args.repeats}): ratio {ratio:.3f}; "
        f"adapter weights differ by at most {diff:.2e} (relative norm)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
