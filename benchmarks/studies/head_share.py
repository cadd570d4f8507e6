"""What share of a forward pass the output head takes: `python benchmarks/studies/head_share.py [MODEL_DIR]`.

Times, in one process, a batch of 16 random sequences through the model body, then the output
projection (`lm_head`, hidden -> vocabulary) and the log-softmax over the vocabulary, at every
position, as lm-eval's multiple-choice scoring and a full-sequence training loss compute them.
Only the continuation's positions (lm-eval) or the answer's (training with `train.loss_on: answer`)
need the head, so its share is the most that scoring it on those positions alone could save.
Default model: the prepared default, resources/models/smollm2-135m-instruct. Prints one line per length.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir", nargs="?", default="resources/models/smollm2-135m-instruct")
    p.add_argument("--lengths", type=int, nargs="+", default=[128, 512])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if not (Path(args.model_dir) / "config.json").is_file():
        raise SystemExit(f"head_share: no model in {args.model_dir}; run `make run` first or name a model folder")
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32).eval()
    for length in args.lengths:
        ids = torch.randint(
            3, model.config.vocab_size, (args.batch, length), generator=torch.Generator().manual_seed(0)
        )
        with torch.no_grad():
            for _ in range(2):  # the second pass is timed: the first warms the allocator
                t0 = time.perf_counter()
                hidden = model.model(input_ids=ids).last_hidden_state
                t1 = time.perf_counter()
                logits = model.lm_head(hidden)
                t2 = time.perf_counter()
                torch.nn.functional.log_softmax(logits, dim=-1)
                t3 = time.perf_counter()
        print(
            f"batch {args.batch} x {length}: body {t1 - t0:.2f} s, lm_head {t2 - t1:.2f} s, "
            f"log_softmax {t3 - t2:.2f} s; head and softmax {(t3 - t1) / (t3 - t0):.0%} of the pass"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
