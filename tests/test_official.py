"""The switches that reproduce the authors' code (season1blue/HLoRA) and the original EWC-LoRA, each
against a reference written here from the formulas (config/README.md), not by calling the code under
test: the u gradient, the running clamp and per-epoch sums; unclipped gradients on both SI paths; the
int8 row codes of the 8-bit Fisher load; the rms norm, the scaled softmax and the fixed no-layer
constant; the phase-1 seed stream; phase 2 continuing phase 1's AdamW state."""

import copy
import math

import numpy as np
import pytest
import torch

from alr.importance.record import phase1_seed
from alr.importance.si import SIRecorder
from alr.methods.penalty import group_by_layer, int8_rows, layer_coefficients
from alr.methods.runs import resolve_run
from alr.model.load import lora_modules
from tests.test_importance import _tiny_lora
from tests.tiny import record


def _factors(m):
    return m.lora_A["default"].weight, m.lora_B["default"].weight


def _delta(m):
    a, b = _factors(m)
    return m.scaling["default"] * b.detach().double() @ a.detach().double()


def _batch(i):
    return torch.randint(0, 64, (3, 7), generator=torch.Generator().manual_seed(100 + i))


@pytest.mark.parametrize("clamp", ["running", "none"])
def test_lora_sgd_gradient_running_clamp_and_per_epoch_sums_match_the_formulas(clamp):
    """Two epochs of three AdamW steps with a decaying lr. Reference, per module: u = s (B gA + gB A -
    lr gB gA) before each step; w <- w - u * (dW_after - dW_before), clamped at 0 after every step
    (`running`); at each epoch's end Omega += w / ((dW - dW_start)^2 + xi) and w restarts at 0."""
    model = _tiny_lora()
    mods = lora_modules(model)
    for m in mods.values():  # B = 0 as PEFT starts (and the authors): the delta since the start is the delta
        torch.nn.init.zeros_(_factors(m)[1])
    xi = 1e-9
    rec = SIRecorder.for_lora(model, xi=xi, clamp=clamp, accumulate="per_epoch", gradient="lora_sgd")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 - step / 8)
    start = {n: _delta(m) for n, m in mods.items()}
    w = {n: torch.zeros_like(d) for n, d in start.items()}
    omega = {n: torch.zeros_like(d) for n, d in start.items()}
    negatives = 0
    for epoch in range(2):
        for step in range(3):
            opt.zero_grad()
            ids = _batch(3 * epoch + step)
            model(input_ids=ids, labels=ids).loss.backward()
            lr = opt.param_groups[0]["lr"]
            before, u = {}, {}
            for n, m in mods.items():
                a, b = _factors(m)
                a64, b64, ga, gb = a.detach().double(), b.detach().double(), a.grad.double(), b.grad.double()
                u[n] = m.scaling["default"] * (b64 @ ga + gb @ a64 - lr * gb @ ga)
                before[n] = _delta(m)
            rec.before_step(lr)
            opt.step()
            rec.after_step()
            sched.step()
            for n, m in mods.items():
                w[n] = w[n] - u[n] * (_delta(m) - before[n])
                negatives += int((w[n] < 0).sum())
                if clamp == "running":
                    w[n] = w[n].clamp_min(0)
        rec.end_epoch()
        for n, m in mods.items():
            omega[n] += w[n] / ((_delta(m) - start[n]).square() + xi)
            w[n].zero_()
    got = rec.importance()
    rec.close()
    assert negatives > 0, "the path must have negative contributions, or the clamp is not tested"
    for n in mods:
        scale = omega[n].abs().max()
        assert torch.allclose(got[n].double() / scale, omega[n] / scale, atol=1e-4), n
    if clamp == "none":
        assert any((t < 0).any() for t in got.values())
    else:
        assert all((t >= 0).all() for t in got.values())


def test_dense_gradient_is_taken_before_clipping_on_both_paths():
    """SI pairs dL/dW of the loss with the update on LoRA (dense hooks) and on full fine-tuning
    (parameter hooks): gradients clipped to a tiny norm before the step must not enter omega."""
    model = _tiny_lora()
    mods = lora_modules(model)
    name, module = next(iter(mods.items()))
    rec = SIRecorder.for_lora(model, xi=1e-6)
    weight = module.get_base_layer().weight
    weight.requires_grad_(True)  # only so autograd gives the reference dL/dW
    lora_params = [p for n, p in model.named_parameters() if "lora_" in n]
    opt = torch.optim.SGD(lora_params, lr=0.5)
    ids = _batch(0)
    model(input_ids=ids, labels=ids).loss.backward()
    g_ref = weight.grad.double().clone()
    torch.nn.utils.clip_grad_norm_(lora_params, 1e-4)
    before = _delta(module)
    rec.before_step(0.5)
    opt.step()
    rec.after_step()
    expected = -g_ref * (_delta(module) - before)  # the recorder's fp32 delta difference loses ~1e-4 here
    assert (rec.omega[name].double() - expected).norm() / expected.norm() < 1e-2
    rec.close()

    torch.manual_seed(0)
    theta = torch.nn.Parameter(torch.randn(4, 3))
    target = torch.randn(4, 3)
    rec = SIRecorder.for_parameters([("theta", theta)], xi=1e-6)
    for _ in range(2):  # two micro-batches accumulate
        (0.5 * (theta - target).square().sum()).backward()
    g_ref = theta.grad.clone()
    torch.nn.utils.clip_grad_norm_([theta], 1e-3)
    before = theta.detach().clone()
    rec.before_step(0.1)
    with torch.no_grad():
        theta -= 0.1 * theta.grad
    rec.after_step()
    assert torch.allclose(rec.omega["theta"], -g_ref * (theta.detach() - before), rtol=1e-5)


def test_int8_rows_reproduce_the_8bit_load():
    """bitsandbytes 0.39.0 `Int8Params.cuda`: fp16 cast, then per row rint(x * 127 / max|x|), ties to
    even; computed here element by element with numpy's float16 and Python's round (ties to even)."""
    rng = np.random.default_rng(0)
    fisher = rng.exponential(6.5e-6, size=(5, 7)).astype(np.float32)
    fisher[1, :3] = [1e-9, 3e-8, 0.0]  # fp16 subnormals and zero
    fisher[2] = 0.0  # a row without information stays 0
    fisher[3, :4] = [127.0, 0.5, 1.5, 2.5]  # x * 127 / max = x exactly: ties to even give 0, 2, 2
    expected = np.zeros_like(fisher)
    for i, row in enumerate(fisher):
        half = row.astype(np.float16).astype(np.float32)
        top = np.max(np.abs(half))
        for j, x in enumerate(half):
            expected[i, j] = 0.0 if top == 0 else round(float(np.float32(x) * (np.float32(127.0) / top)))
    got = int8_rows({"w": torch.from_numpy(fisher)})["w"].numpy()
    np.testing.assert_array_equal(got, expected)
    assert list(got[3, :4]) == [127, 0, 2, 2] and got[2].max() == 0 and got[0].max() == 127


def test_layer_norm_rms_layer_scale_and_fixed_uniform_constant():
    """Equal per-element importance on a 6x6 and a 2x6 module of two blocks: `l2` favours the larger
    (norm ratio sqrt 3), `rms` does not; `layer_scale: c` is softmax(c * ||.||_2); `uniform_coef:
    blocks` is 1/blocks for every module (sum 2 here), as the authors' 1/28 for 56 modules."""
    imp = {
        "model.layers.0.q": torch.full((6, 6), 0.3),
        "model.layers.0.v": torch.full((2, 6), 0.3),
        "model.layers.1.q": torch.full((6, 6), 0.3),
        "model.layers.1.v": torch.full((2, 6), 0.3),
    }
    groups = group_by_layer(imp, "module")
    l2 = [0.3 * math.sqrt(36), 0.3 * math.sqrt(12)] * 2
    mean = sum(l2) / 4
    exp = [math.exp(v / mean) for v in l2]
    coef = layer_coefficients(imp, groups, "softmax_norm", norm="l2")
    assert list(coef.values()) == pytest.approx([e / sum(exp) for e in exp])
    assert coef["model.layers.0.q"] / coef["model.layers.0.v"] > 1.2
    assert list(layer_coefficients(imp, groups, "softmax_norm", norm="rms").values()) == pytest.approx([0.25] * 4)
    c = 0.7
    exp = [math.exp(c * v) for v in l2]
    scaled = layer_coefficients(imp, groups, "softmax_norm", norm="l2", scale=c)
    assert list(scaled.values()) == pytest.approx([e / sum(exp) for e in exp])
    assert list(layer_coefficients(imp, groups, "uniform", uniform="blocks").values()) == [0.5] * 4
    assert list(layer_coefficients(imp, groups, "uniform").values()) == [0.25] * 4
    assert list(layer_coefficients(imp, groups, "uniform", uniform=0.1).values()) == [0.1] * 4


def test_phase1_seed_stream_separates_the_lora_init_from_phase2(tiny_model, tiny_data, tiny_cfg, tmp_path):
    """`separate`: phase 1's lora_A differs from the one phase-2 seed 0 draws; `shared`: identical (the
    old behaviour, and the authors'). The phase-2 init is what `set_seed(0)` + PEFT draw."""
    from safetensors.torch import load_file
    from transformers import set_seed

    from alr.model.load import load_base, wrap_lora

    set_seed(0)
    model, _ = load_base(tiny_model, "float32")
    phase2 = {n: p.detach() for n, p in wrap_lora(model, tiny_cfg["lora"]).named_parameters() if "lora_A" in n}
    assert phase1_seed(0, "shared") == 0 and phase1_seed(0, "separate") not in (0, 1, 2)
    for stream in ("separate", "shared"):
        c = copy.deepcopy(tiny_cfg)
        c["importance"].update(seed_stream=stream, max_steps=0)  # 0 steps: the adapter as initialised
        record("si", c, tiny_model, tiny_data, tmp_path / stream / "si.safetensors")
        saved = load_file(str(tmp_path / stream / "si_adapter" / "adapter_model.safetensors"))
        a_saved = {k: v for k, v in saved.items() if "lora_A" in k}
        same = all(
            torch.equal(
                v,
                next(
                    p
                    for n, p in phase2.items()
                    if n.endswith(k.split("base_model.model.")[-1].replace(".weight", ".default.weight"))
                ),
            )
            for k, v in a_saved.items()
        )
        assert same is (stream == "shared"), stream


def test_phase2_continues_phase1_adam_state(tiny_model, tiny_data, tiny_cfg, tmp_path, monkeypatch):
    """`phase2_optimizer: phase1`: when phase 2's first step runs, its AdamW holds exactly the moments
    and step counts saved with phase 1's adapter, and phase 2's own learning rate."""
    import alr.model.trainer as trainer_mod
    from alr.finetune.run import finetune

    cfg = copy.deepcopy(tiny_cfg)
    cfg["importance"].update(max_steps=3, lr=5e-3)
    cfg["regularize"].update(phase2_init="phase1", phase2_optimizer="phase1")
    cfg["train"].update(max_steps=1, lr=2e-4)
    imp = tmp_path / "si.safetensors"
    record("si", cfg, tiny_model, tiny_data, imp)
    saved = torch.load(tmp_path / "si_adapter" / "optimizer.pt", weights_only=True)
    seen = {}
    original = trainer_mod.continue_optimizer_state

    def spy(optimizer, state):
        original(optimizer, state)
        seen["state"] = {i: {k: v.clone() for k, v in s.items()} for i, s in optimizer.state_dict()["state"].items()}
        seen["lr"] = [g["lr"] for g in optimizer.param_groups]

    monkeypatch.setattr(trainer_mod, "continue_optimizer_state", spy)
    rec = finetune(
        resolve_run(cfg, "alr"), tiny_model, tiny_data, "science", 0, tmp_path / "run", imp, tmp_path / "si_adapter"
    )
    assert rec["optimizer_from_phase1"] is True
    assert set(seen["state"]) == set(saved["state"]) and saved["state"]
    for i, s in saved["state"].items():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(seen["state"][i][key].cpu(), s[key].cpu()), (i, key)
    assert float(next(iter(saved["state"].values()))["step"]) == 3
    assert seen["lr"] and all(lr == pytest.approx(2e-4) for lr in seen["lr"])


def test_alr_official_records_its_own_importance_and_continues_its_adapter(tiny_model, tiny_data, tiny_cfg, tmp_path):
    """si_official reads `official` over `importance` (sidecar and file name say so); alr_official
    trains with official.regularize (raw lambda, scaled softmax, phase-1 adapter and optimizer)."""
    from alr.core.io import read_json
    from alr.finetune.run import finetune
    from alr.importance.estimators import get_estimator

    cfg = copy.deepcopy(tiny_cfg)
    cfg["official"]["importance"].update(epochs=2, max_steps=-1)
    cfg["importance"]["samples"] = 16
    cfg["train"]["max_steps"] = 2
    imp = tmp_path / "si_official.safetensors"
    side = get_estimator("si_official").record(cfg, tiny_model, tiny_data, imp, None)
    assert side["estimator"] == "si_official" and side["config"]["importance"]["gradient"] == "lora_sgd"
    assert side["config"]["importance"]["clamp"] == "running" and side["seed"] == 0 and side["torch_seed"] == 0
    assert (tmp_path / "si_official_adapter" / "optimizer.pt").exists()
    rec = finetune(
        resolve_run(cfg, "alr_official"),
        tiny_model,
        tiny_data,
        "science",
        0,
        tmp_path / "run",
        imp,
        tmp_path / "si_official_adapter",
    )
    assert rec["config"]["regularize"]["lambda"] == cfg["official"]["regularize"]["lambda"]
    assert rec["optimizer_from_phase1"] is True and rec["final_reg"] > 0
    assert read_json(tmp_path / "run" / "train.json")["config"]["regularize"]["layer_scale"] == 1e-8
    assert side["epoch_terms"] == 2  # the Trainer called end_epoch once per epoch
    warm = finetune(
        resolve_run(cfg, "lora_official"),
        tiny_model,
        tiny_data,
        "science",
        0,
        tmp_path / "warm",
        None,
        tmp_path / "si_official_adapter",
    )
    assert warm["optimizer_from_phase1"] is True and warm["final_reg"] is None
    with pytest.raises(ValueError, match="holds 'si_official' importance, but this method uses 'si'"):
        plain = copy.deepcopy(tiny_cfg)
        plain["train"]["max_steps"] = 1
        finetune(resolve_run(plain, "alr"), tiny_model, tiny_data, "science", 0, tmp_path / "wrong", imp)


def test_phase1_lr_and_clipping_reach_the_trainer(tiny_model, tiny_data, tiny_cfg, tmp_path, monkeypatch):
    """`importance.lr` and `importance.max_grad_norm` replace train's for the LoRA phase 1 (0: no
    clipping, the authors'); si_full keeps baselines.full_ft_lr; null keeps train's values."""
    import alr.importance.record as record_mod

    seen = []
    original = record_mod.training_arguments

    def spy(train_cfg, *args, **kwargs):
        seen.append((train_cfg["lr"], train_cfg["max_grad_norm"]))
        return original(train_cfg, *args, **kwargs)

    monkeypatch.setattr(record_mod, "training_arguments", spy)
    cfg = copy.deepcopy(tiny_cfg)
    cfg["importance"].update(max_steps=1, lr=8e-4, max_grad_norm=0)
    record("si", cfg, tiny_model, tiny_data, tmp_path / "lora" / "si.safetensors")
    record("si_full", cfg, tiny_model, tiny_data, tmp_path / "full" / "si_full.safetensors")
    cfg["importance"].update(lr=None, max_grad_norm=None)
    record("si", cfg, tiny_model, tiny_data, tmp_path / "plain" / "si.safetensors")
    assert seen == [(8e-4, 0), (cfg["baselines"]["full_ft_lr"], 0), (cfg["train"]["lr"], cfg["train"]["max_grad_norm"])]


def test_each_method_reads_its_own_normalisation(tiny_cfg):
    from alr.methods.registry import get_method

    assert get_method("ewc_lora").normalization(tiny_cfg) == tiny_cfg["fisher"]["normalize"] == "int8_rows"
    assert get_method("ewc_lora_raw").normalization(tiny_cfg) == "none"
    assert get_method("alr").normalization(tiny_cfg) == "mean"
    assert get_method("alr_official").normalization(tiny_cfg) == "none"  # official.regularize.normalize
