"""lm-eval's scorer against alr's shared-context scorer: `python benchmarks/shared_context.py`.

Scores the default's multiple-choice test tasks (every general task and every domain of the config,
all items) on the base model twice in one process, with lm-eval's own HFLM scorer and with
alr.shared_context, alternating `--repeats` times. Prints each scorer's time per repeat, the ratio of
their medians, and how far apart the scores are: per task, accuracy and acc_norm (equal or not), and
over all items, the largest difference of the gold answer's log-likelihood. Reads the prepared model
and data of a `make run` (resources/); 2 threads, as the pipeline's jobs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="config/config.yaml")
    p.add_argument("--model-dir", default="resources/models/smollm2-135m-instruct")
    p.add_argument("--data-dir", default="resources/data")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if not (Path(args.model_dir) / "manifest.json").is_file() or not Path(args.data_dir).is_dir():
        raise SystemExit("shared_context: no prepared model or data; run `make run` first or name the folders")
    import torch

    from alr.catalogue import datasets
    from alr.config import load_config
    from alr.evaluate import run_lm_eval
    from alr.models import load_tuned

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    files = {n: Path(args.data_dir) / n / "test.jsonl" for n in datasets(cfg["data"], built=True)}
    model, tok = load_tuned(args.model_dir, None)
    times: dict[bool, list[float]] = {False: [], True: []}
    runs = {}
    for _ in range(args.repeats):
        for shared in (False, True):
            start = time.perf_counter()
            runs[shared] = run_lm_eval(model, tok, files, cfg["eval"]["batch_size"], None, shared_contexts=shared)
            times[shared].append(time.perf_counter() - start)
    for shared, name in ((False, "lm-eval HFLM"), (True, "shared context")):
        print(f"{name:>15}: {', '.join(f'{t:.1f}' for t in times[shared])} s")
    ratio = statistics.median(times[True]) / statistics.median(times[False])
    print(f"shared / lm-eval: {ratio:.3f} of the time (medians of {args.repeats})")
    (theirs, their_items), (ours, our_items) = runs[False], runs[True]
    for task in sorted(theirs):
        same = all(ours[task][m] == theirs[task][m] for m in ("acc", "acc_norm"))
        print(
            f"{task:>16}: acc {theirs[task]['acc']:.4f} / {ours[task]['acc']:.4f}  {'equal' if same else 'DIFFERENT'}"
        )
    mine = {(r["task"], r["id"]): r for r in our_items}
    gap = max(abs(r.get("gold_nll", 0.0) - mine[r["task"], r["id"]].get("gold_nll", 0.0)) for r in their_items)
    print(f"largest gold log-likelihood difference over {len(our_items)} items: {gap:.2e} nats")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
