"""Overheads of alr's importance recording and penalty against plain LoRA, measured in one process.

    make bench                                   # = python benchmarks/bench.py (CPU, < 10 min on 2 cores)
    python benchmarks/bench.py --device cuda --sizes 1b --dtype bfloat16 --batch 8 --seq 512   # GPU check

Every step is a real optimizer step through alr's own Trainer path (`alr.model.trainer.run_trainer`): plain
LoRA, LoRA + the alr penalty (`alr.methods.penalty.Regularizer`, softmax_norm coefficients), and phase-1
LoRA training with the SI recorder (`alr.importance.si`). Modes are interleaved repeat by repeat in
rotating order, the first steps of every run are warm-up, and the median of the remaining step times
is reported.
Storage ratios come from real files written by `alr.importance.store.save_importance`: the SI
importance (fp32 and bf16) and the full-model empirical Fisher of the EWC-LoRA baseline (fp32).
Peak memory on CPU is the peak resident set of a fresh child process per mode during training (the
high-water mark is reset after the model is loaded; the CPU allocator keeps no statistics); on CUDA
it is the torch allocator's peak per mode.

The last line printed is one JSON object of ratios (and whether the targets of issue 7 are met).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import multiprocessing
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alr.config import load_config  # noqa: E402
from alr.importance.fisher import empirical_fisher  # noqa: E402
from alr.importance.si import SIRecorder, si_callback  # noqa: E402
from alr.importance.store import save_importance  # noqa: E402
from alr.methods.penalty import Regularizer, normalise_mean  # noqa: E402
from alr.model.load import lora_modules, wrap_lora  # noqa: E402
from alr.model.trainer import run_trainer, training_arguments  # noqa: E402
from alr.plugins import load_plugins  # noqa: E402
from alr.report.protocol import load_protocol  # noqa: E402

PRESCRIBED_PASSES = load_protocol().speed["prescribed"]  # the speed claim's sample counts (config/protocol.yaml)

MODES = ("lora", "reg", "si")
TARGETS = {"si_record_step_ratio": 1.15, "reg_step_ratio": 1.05, "storage_ratio_bf16": 0.05, "peak_mem_ratio": 1.10}
GPU_TARGETS = {"si_record_step_ratio": 1.10, "reg_step_ratio": 1.03}
SMOLLM2 = REPO / "resources" / "models" / "smollm2-135m-instruct"
# Random Llamas beside the real model; "135m" has SmolLM2-135M's shape (used when it is not prepared).
SIZES = {
    "tiny": dict(
        hidden_size=64,
        intermediate_size=172,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1024,
    ),
    "135m": dict(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        tie_word_embeddings=True,
    ),
    "wide": dict(
        hidden_size=1536,
        intermediate_size=4096,
        num_hidden_layers=4,
        num_attention_heads=24,
        num_key_value_heads=8,
        vocab_size=49152,
    ),
    "1b": dict(
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=20,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=32000,
    ),
}


def build_model(size: str, dtype: torch.dtype, device: str):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if size == "135m" and (SMOLLM2 / "config.json").exists():
        model = AutoModelForCausalLM.from_pretrained(SMOLLM2, dtype=dtype)
        source = "SmolLM2-135M-Instruct (prepared)"
    else:
        model = LlamaForCausalLM(LlamaConfig(max_position_embeddings=4096, **SIZES[size])).to(dtype)
        source = "random Llama"
    return model.to(device), source


def batches(vocab: int, n: int, seq: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (n, seq), generator=g).tolist()
    return [{"input_ids": x, "attention_mask": [1] * seq, "labels": x} for x in ids]


class _Pad:
    """A stand-in tokenizer for the collator: fixed-length rows need only a pad id."""

    pad_token_id = 0
    padding_side = "right"

    def pad(self, features, **kwargs):
        from transformers.tokenization_utils_base import BatchEncoding

        return BatchEncoding({k: torch.tensor([f[k] for f in features]) for k in features[0]}, tensor_type="pt")


def step_timer(device: str):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self._t = [], 0.0

        def _sync(self):
            if device == "cuda":
                torch.cuda.synchronize()

        def on_step_begin(self, args, state, control, **kwargs):
            self._sync()
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self._sync()
            self.times.append(time.perf_counter() - self._t)

    return StepTimer()


def random_importance(model) -> dict[str, torch.Tensor]:
    """SI-like importance (non-negative, heavy-tailed, 40% zeros) on each adapted module's weight."""
    g = torch.Generator().manual_seed(1)
    out = {}
    for n, m in lora_modules(model).items():
        w = m.get_base_layer().weight
        x = torch.empty(w.shape).exponential_(generator=g).pow_(3)
        x[torch.rand(w.shape, generator=g) < 0.4] = 0
        out[n] = x.to(w.device)
    return out


def train_args(cfg: dict, steps: int, batch: int, device: str, dtype: torch.dtype):
    train_cfg = dict(cfg["train"], batch_size=batch, grad_accum=1, max_steps=steps)
    args = training_arguments(train_cfg, 0, tempfile.mkdtemp(prefix="alr-bench-"), max_steps=steps)
    args.disable_tqdm = True
    args.logging_steps = steps  # the finite-loss check still sees every logged loss
    return args


def run_mode(
    base, mode: str, cfg: dict, features: list[dict], steps: int, batch: int, device: str, dtype: torch.dtype
) -> tuple[list[float], object]:
    """`steps` optimizer steps of one mode on a fresh LoRA copy of `base`; returns (step times, model)."""
    torch.manual_seed(0)
    model = wrap_lora(copy.deepcopy(base), cfg["lora"])
    timer = step_timer(device)
    callbacks, regularizer, recorder = [timer], None, None
    if mode == "reg":
        importance = normalise_mean(random_importance(model))
        regularizer = Regularizer(lora_modules(model), importance, cfg["regularize"]["lambda"], "softmax_norm")
    elif mode == "si":
        recorder = SIRecorder.for_lora(model, cfg["importance"]["xi"])
        callbacks.append(si_callback(recorder))
    with contextlib.redirect_stdout(io.StringIO()):  # the Trainer prints every log dict
        run_trainer(
            model,
            _Pad(),
            features[: steps * batch],
            train_args(cfg, steps, batch, device, dtype),
            callbacks=callbacks,
            regularizer=regularizer,
        )
    if recorder is not None:
        recorder.importance()
        recorder.close()
    return timer.times, model


def time_modes(base, cfg, features, repeats: int, steps: int, warmup: int, batch: int, device: str, dtype):
    """(median step time per mode over every repeat's steps, each repeat's own median per mode)."""
    times = {m: [] for m in MODES}
    per_repeat = {m: [] for m in MODES}
    for r in range(repeats):
        for mode in MODES[r % len(MODES) :] + MODES[: r % len(MODES)]:  # rotated: no mode always runs first
            t, _ = run_mode(base, mode, cfg, features, steps, batch, device, dtype)
            times[mode] += t[warmup:]
            per_repeat[mode].append(statistics.median(t[warmup:]))
    return {m: statistics.median(v) for m, v in times.items()}, per_repeat


def _rss_high_water_kib(reset: bool = False) -> int:
    """VmHWM of this process; `reset` restarts it at the current RSS (Linux clear_refs 5), so the
    peak of loading the model does not hide the peak of training."""
    if reset:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))


def _child_peak(conn, size, mode, cfg, steps, batch, seq):
    base, _ = build_model(size, torch.float32, "cpu")
    features = batches(base.config.vocab_size, steps * batch, seq)
    loaded = _rss_high_water_kib(reset=True)
    run_mode(base, mode, cfg, features, steps, batch, "cpu", torch.float32)
    conn.send((loaded, _rss_high_water_kib()))


def peak_memory_mb(size, cfg, steps, batch, seq, device, dtype) -> dict[str, float]:
    """Peak memory of a short training run per mode (MiB)."""
    out = {}
    if device == "cuda":
        base, _ = build_model(size, dtype, device)
        features = batches(base.config.vocab_size, steps * batch, seq)
        for mode in MODES:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            model = run_mode(base, mode, cfg, features, steps, batch, device, dtype)[1]
            out[mode] = torch.cuda.max_memory_allocated() / 2**20
            del model
        return out
    ctx = multiprocessing.get_context("spawn")
    for mode in MODES:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_child_peak, args=(child, size, mode, cfg, steps, batch, seq))
        proc.start()
        loaded, peak = parent.recv()
        proc.join()
        out[mode] = peak / 1024
        out[f"{mode}_before_training"] = loaded / 1024
    return out


def storage_and_fisher_time(
    base, cfg: dict, si_steps_s: list[float], batch: int, seq: int, n_fisher: int, device: str
) -> dict:
    """Real files: SI importance in fp32 and bf16, full-model Fisher in fp32; time per sample of each
    estimator, one value per repeat (SI: each repeat's median step / batch; Fisher: `n_fisher` samples
    timed once per repeat), and the time ratio at the claim's own sample counts (PRESCRIBED_PASSES)."""
    model = wrap_lora(copy.deepcopy(base), cfg["lora"])
    importance = random_importance(model)
    del model
    fisher_model = copy.deepcopy(base)
    feats = batches(base.config.vocab_size, n_fisher, seq)
    for f in feats:
        f.pop("attention_mask")
    empirical_fisher(fisher_model, feats[:1], None, device)  # warm-up
    fisher_per_sample = []
    for _ in si_steps_s:
        t0 = time.perf_counter()
        fisher = empirical_fisher(fisher_model, feats, None, device)
        if device == "cuda":
            torch.cuda.synchronize()
        fisher_per_sample.append((time.perf_counter() - t0) / n_fisher)
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {}
        for name, tensors, dtype in (
            ("si_fp32", importance, "float32"),
            ("si_bf16", importance, "bfloat16"),
            ("fisher_fp32", fisher, "float32"),
        ):
            sizes[name] = save_importance(
                Path(tmp) / f"{name}.safetensors", tensors, {"estimator": name, "fingerprint": "bench"}, dtype
            )["bytes"]
    si_per_sample = [s / batch for s in si_steps_s]
    fisher_s, si_s = statistics.median(fisher_per_sample), statistics.median(si_per_sample)
    prescribed = PRESCRIBED_PASSES["fisher"] / PRESCRIBED_PASSES["si"]
    return {
        "bytes": sizes,
        "fisher_s_per_sample": fisher_s,
        "fisher_s_per_sample_range": [min(fisher_per_sample), max(fisher_per_sample)],
        "si_s_per_sample": si_s,
        "si_s_per_sample_range": [min(si_per_sample), max(si_per_sample)],
        "si_vs_fisher_time_ratio_equal_samples": fisher_s / si_s,
        "si_vs_fisher_time_ratio_default_counts": (fisher_s * cfg["fisher"]["samples"])
        / (si_s * cfg["importance"]["samples"] * cfg["importance"]["epochs"]),
        "si_vs_fisher_time_ratio_prescribed": prescribed * fisher_s / si_s,
        "si_vs_fisher_time_ratio_prescribed_range": [
            prescribed * min(fisher_per_sample) / max(si_per_sample),
            prescribed * max(fisher_per_sample) / min(si_per_sample),
        ],
        "storage_ratio_fp32": sizes["si_fp32"] / sizes["fisher_fp32"],
        "storage_ratio_bf16": sizes["si_bf16"] / sizes["fisher_fp32"],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    p.add_argument("--sizes", nargs="+", default=["tiny", "135m", "wide"], choices=list(SIZES))
    p.add_argument("--main-size", default=None, help="size for storage, Fisher and memory (default: 135m or the last)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=4, help="optimizer steps per run (the first --warmup are dropped)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--fisher-samples", type=int, default=16)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-fisher", action="store_true", help="no Fisher timing or storage files (GPU step check)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_plugins()
    cfg = load_config(args.config)
    dtype = getattr(torch, args.dtype)
    main_size = args.main_size or ("135m" if "135m" in args.sizes else args.sizes[-1])
    machine = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(
        f"# alr bench: {machine}; torch {torch.__version__}; batch {args.batch} x {args.seq} tokens; {args.dtype}; "
        f"LoRA r={cfg['lora']['r']} on {','.join(cfg['lora']['targets'])}; median of {args.repeats} x "
        f"{args.steps - args.warmup} steps",
        flush=True,
    )
    print(
        f"{'size':6} {'params':>8} {'lora s/step':>12} {'reg s/step':>11} {'si s/step':>10} {'tok/s lora':>11} "
        f"{'reg ratio':>10} {'si ratio':>9}",
        flush=True,
    )
    per_size, fisher_cmp = {}, None
    for size in args.sizes:
        base, source = build_model(size, dtype, args.device)
        features = batches(base.config.vocab_size, args.steps * args.batch, args.seq)
        med, per_repeat = time_modes(
            base, cfg, features, args.repeats, args.steps, args.warmup, args.batch, args.device, dtype
        )
        n_params = sum(p.numel() for p in base.parameters())
        row = {
            "params": n_params,
            "source": source,
            "step_s": med,
            "tokens_per_s": {m: args.batch * args.seq / s for m, s in med.items()},
            "reg_step_ratio": med["reg"] / med["lora"],
            "si_record_step_ratio": med["si"] / med["lora"],
        }
        per_size[size] = row
        print(
            f"{size:6} {n_params / 1e6:7.1f}M {med['lora']:12.4f} {med['reg']:11.4f} {med['si']:10.4f} "
            f"{row['tokens_per_s']['lora']:11.0f} {row['reg_step_ratio']:10.3f} {row['si_record_step_ratio']:9.3f}",
            flush=True,
        )
        if size == main_size and not args.skip_fisher:
            fisher_cmp = storage_and_fisher_time(
                base, cfg, per_repeat["si"], args.batch, args.seq, args.fisher_samples, args.device
            )
        del base
    mem = peak_memory_mb(main_size, cfg, 3, args.batch, args.seq, args.device, dtype)
    print(f"\npeak memory ({main_size}, MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in mem.items()))
    ratios = {
        "si_record_step_ratio": per_size[main_size]["si_record_step_ratio"],
        "reg_step_ratio": per_size[main_size]["reg_step_ratio"],
        "peak_mem_ratio": mem["reg"] / mem["lora"],
        "si_peak_mem_ratio": mem["si"] / mem["lora"],
    }
    if fisher_cmp is not None:
        report_storage(fisher_cmp, main_size, args)
        ratios.update(
            {
                k: fisher_cmp[k]
                for k in (
                    "si_vs_fisher_time_ratio_equal_samples",
                    "si_vs_fisher_time_ratio_default_counts",
                    "si_vs_fisher_time_ratio_prescribed",
                    "si_vs_fisher_time_ratio_prescribed_range",
                    "storage_ratio_fp32",
                    "storage_ratio_bf16",
                )
            }
        )
    ratios["by_size"] = {
        s: {
            "params": r["params"],
            "reg_step_ratio": r["reg_step_ratio"],
            "si_record_step_ratio": r["si_record_step_ratio"],
            "tokens_per_s": r["tokens_per_s"],
        }
        for s, r in per_size.items()
    }
    targets = GPU_TARGETS if args.device == "cuda" else TARGETS
    ratios["targets"] = {
        k: {"value": ratios[k], "max": v, "met": ratios[k] <= v} for k, v in targets.items() if k in ratios
    }
    ratios["targets_met"] = all(t["met"] for t in ratios["targets"].values())
    ratios["machine"] = machine
    print(json.dumps(_rounded(ratios)))
    return 0


def _rounded(x):
    if isinstance(x, float):
        return round(x, 4)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    return x


def report_storage(main: dict, main_size: str, args) -> None:
    b = main["bytes"]
    print(
        f"storage ({main_size}): SI fp32 {b['si_fp32']:,} B, SI bf16 {b['si_bf16']:,} B, "
        f"full Fisher fp32 {b['fisher_fp32']:,} B"
    )
    si_lo, si_hi = main["si_s_per_sample_range"]
    f_lo, f_hi = main["fisher_s_per_sample_range"]
    r_lo, r_hi = main["si_vs_fisher_time_ratio_prescribed_range"]
    print(
        f"time per sample ({main_size}, median [min, max] of {args.repeats} repeats): SI phase 1 "
        f"{main['si_s_per_sample']:.4f} [{si_lo:.4f}, {si_hi:.4f}] s (batch {args.batch}), Fisher "
        f"{main['fisher_s_per_sample']:.4f} [{f_lo:.4f}, {f_hi:.4f}] s (batch 1, {args.fisher_samples} samples)"
    )
    verdict = "supported" if r_lo >= 10 else "contradicted" if r_hi < 10 else "undecided (the range spans 10x)"
    print(
        f"speed claim at the prescribed counts (Fisher {PRESCRIBED_PASSES['fisher']:,} samples, SI "
        f"{PRESCRIBED_PASSES['si']:,} sample passes, both at {args.seq} tokens): Fisher / SI = "
        f"{main['si_vs_fisher_time_ratio_prescribed']:.2f}x [{r_lo:.2f}, {r_hi:.2f}]; '20x faster' "
        f"(supported if >= 10x over the whole range): {verdict}"
    )


if __name__ == "__main__":
    sys.exit(main())
