"""SI importance, the penalty and layer coefficients against closed forms and naive references."""

import pytest
import torch

from alr.importance.si import SIRecorder
from alr.methods.penalty import Regularizer, group_by_layer, layer_coefficients, layer_mean_importance
from alr.model.load import lora_modules


def test_si_matches_quadratic_closed_form():
    """L = 1/2 sum h (theta - a)^2 under SGD at step eta: Omega -> h / (2 - eta h) as xi -> 0."""
    torch.manual_seed(0)
    h = torch.tensor([0.1, 0.5, 1.0, 2.0, 3.0])
    a = torch.randn(5)
    eta = 0.3
    theta = torch.nn.Parameter(a + torch.randn(5))
    rec = SIRecorder.for_parameters([("theta", theta)], xi=1e-30)
    for _ in range(2000):
        loss = 0.5 * (h * (theta - a).square()).sum()
        loss.backward()
        rec.before_step()
        with torch.no_grad():
            theta -= eta * theta.grad
        rec.after_step()
        theta.grad = None
    omega = rec.importance()["theta"]
    expected = h / (2 - eta * h)
    assert torch.allclose(omega, expected, rtol=1e-2), (omega, expected)


def _tiny_lora(seed=0):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = get_peft_model(
        LlamaForCausalLM(cfg), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    )
    for n, p in model.named_parameters():
        if "lora_B" in n:  # start away from B = 0 so the penalty and its gradient are not trivially zero
            torch.nn.init.normal_(p, std=0.5)
    return model


@pytest.mark.parametrize("with_ref", [False, True])
def test_penalty_and_gradient_match_dense_float64(with_ref):
    model = _tiny_lora()
    mods = lora_modules(model)
    gen = torch.Generator().manual_seed(1)
    omega = {n: torch.rand(m.get_base_layer().weight.shape, generator=gen) for n, m in mods.items()}
    refs = {n: torch.randn(o.shape, generator=gen) * 0.1 for n, o in omega.items()} if with_ref else {}
    reg = Regularizer(mods, omega, lam=0.7, layer_coef="softmax_norm", refs=refs)
    total = reg()
    total.backward()

    ref_total = 0.0
    params64 = {}
    for layer, names in reg.groups.items():
        for n in names:
            m = mods[n]
            a = m.lora_A["default"].weight.detach().double().requires_grad_()
            b = m.lora_B["default"].weight.detach().double().requires_grad_()
            params64[n] = (a, b)
            delta = m.scaling["default"] * b @ a - (refs[n].double() if with_ref else 0)
            ref_total = ref_total + 0.7 * reg.coefficients[layer] * (omega[n].double() * delta**2).sum()
    ref_total.backward()
    assert abs(total.item() - ref_total.item()) / abs(ref_total.item()) < 1e-6
    for n, (a, b) in params64.items():
        for ours, theirs in (
            (mods[n].lora_A["default"].weight.grad, a.grad),
            (mods[n].lora_B["default"].weight.grad, b.grad),
        ):
            assert (ours.double() - theirs).norm() / theirs.norm() < 1e-6


def test_layer_coefficients():
    gen = torch.Generator().manual_seed(0)
    imp = {
        f"model.layers.{i}.self_attn.{p}": torch.rand(8, 8, generator=gen) * (i + 1)
        for i in range(4)
        for p in ("q_proj", "v_proj")
    }
    for gran, n_layers in (("module", 8), ("block", 4)):
        groups = group_by_layer(imp, gran)
        assert len(groups) == n_layers
        uni = layer_coefficients(imp, groups, "uniform")
        assert all(v == pytest.approx(1 / n_layers) for v in uni.values())
        soft = layer_coefficients(imp, groups, "softmax_norm")
        assert sum(soft.values()) == pytest.approx(1.0)
        assert max(soft.values()) < 0.9
        assert soft[max(soft, key=soft.get)] == max(soft.values())
        assert max(soft, key=soft.get).startswith("model.layers.3")  # the most important block wins most
    sharp = layer_coefficients(imp, group_by_layer(imp, "block"), "softmax_norm", tau=0.01)
    assert max(sharp.values()) > 0.99


def test_layer_mean_importance_keeps_each_layers_mass():
    gen = torch.Generator().manual_seed(0)
    imp = {
        "model.layers.0.q_proj": torch.rand(4, 4, generator=gen),
        "model.layers.0.v_proj": torch.rand(2, 4, generator=gen),
    }
    groups = group_by_layer(imp, "block")
    flat = layer_mean_importance(imp, groups)
    assert sum(t.sum() for t in flat.values()) == pytest.approx(sum(t.sum() for t in imp.values()))
    assert len({float(v) for t in flat.values() for v in t.flatten()}) == 1


def test_shuffled_importance_keeps_each_modules_values_and_layer_coefficients():
    """alr_shuffled's control: the same values per module (so the same norms and coefficients), a
    different element pattern, the same permutation for the same seed and another for another seed."""
    from alr.methods.penalty import ELEMENT_TRANSFORMS, shuffle_within_modules
    from alr.methods.registry import ELEMENTS

    assert set(ELEMENT_TRANSFORMS) == set(ELEMENTS)
    gen = torch.Generator().manual_seed(0)
    imp = {
        f"model.layers.{i}.self_attn.{m}": torch.rand(6, 4, generator=gen)
        for i in range(3)
        for m in ("q_proj", "v_proj")
    }
    groups = group_by_layer(imp, "module")
    shuffled = shuffle_within_modules(imp, seed=1)
    for name, t in imp.items():
        assert torch.equal(shuffled[name].flatten().sort().values, t.flatten().sort().values)
        assert not torch.equal(shuffled[name], t)
    assert layer_coefficients(shuffled, groups, "softmax_norm") == pytest.approx(
        layer_coefficients(imp, groups, "softmax_norm")
    )
    again, other = shuffle_within_modules(imp, seed=1), shuffle_within_modules(imp, seed=2)
    assert all(torch.equal(again[n], shuffled[n]) for n in imp)
    assert not all(torch.equal(other[n], shuffled[n]) for n in imp)


@pytest.mark.parametrize("dtype, rtol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_si_on_lora_accumulates_dense_weight_gradient(dtype, rtol):
    """g_W from the hooks equals autograd's dL/dW when W is (only for this check) made trainable;
    in bf16 the per-micro-batch product is rounded to bf16 before the fp32 accumulation."""
    model = _tiny_lora().to(dtype)
    mods = lora_modules(model)
    rec = SIRecorder.for_lora(model, xi=1e-6)
    name = next(iter(mods))
    w = mods[name].get_base_layer().weight
    w.requires_grad_(True)
    ids = torch.randint(0, 64, (3, 7), generator=torch.Generator().manual_seed(0))
    for _ in range(2):  # two micro-batches accumulate
        model(input_ids=ids, labels=ids).loss.backward()
    g = rec.targets[name].grad
    assert g.dtype == torch.float32
    assert ((g - w.grad.float()).norm() / w.grad.float().norm()) < rtol
    rec.close()


def test_stacked_penalty_does_not_depend_on_the_stack_size(monkeypatch):
    """Modules are stacked into batched products of bounded size; splitting stacks changes nothing."""
    import alr.methods.penalty as regularize

    model = _tiny_lora()
    mods = lora_modules(model)
    gen = torch.Generator().manual_seed(2)
    omega = {n: torch.rand(m.get_base_layer().weight.shape, generator=gen) for n, m in mods.items()}
    whole = Regularizer(mods, omega, lam=1.0, layer_coef="softmax_norm")
    monkeypatch.setattr(regularize, "MAX_STACK_ELEMENTS", 1)  # one module per stack
    split = Regularizer(mods, omega, lam=1.0, layer_coef="softmax_norm")
    assert len(split.terms) == len(mods) > len(whole.terms)
    assert float(split()) == pytest.approx(float(whole()), rel=1e-6)
    assert whole.layer_penalties == pytest.approx(split.layer_penalties, rel=1e-6)


@pytest.mark.parametrize("dtype, tol", [("float32", 0.0), ("bfloat16", 1e-2), ("float16", 1e-3)])
def test_importance_store_roundtrip(tmp_path, dtype, tol):
    from alr.importance.store import load_importance, save_importance

    gen = torch.Generator().manual_seed(0)
    tensors = {
        "model.layers.0.self_attn.q_proj": torch.rand(8, 4, generator=gen),
        "model.layers.0.self_attn.v_proj": torch.rand(2, 4, generator=gen),
    }
    side = save_importance(tmp_path / "si.safetensors", tensors, {"estimator": "si", "fingerprint": "abc"}, dtype)
    assert side["bytes"] == (tmp_path / "si.safetensors").stat().st_size and side["dtype"] == dtype
    loaded, sidecar = load_importance(tmp_path / "si.safetensors", {n: t.shape for n, t in tensors.items()}, "abc")
    assert sidecar["targets"] == sorted(tensors)
    for n, t in tensors.items():
        assert loaded[n].dtype == torch.float32
        assert torch.allclose(loaded[n], t, rtol=tol, atol=0)
    assert not list(tmp_path.glob(".*.tmp"))


def test_dynamic_coefficients_follow_the_current_penalties():
    model = _tiny_lora()
    mods = lora_modules(model)
    omega = {n: torch.ones(m.get_base_layer().weight.shape) for n, m in mods.items()}
    reg = Regularizer(mods, omega, lam=1.0, layer_coef="dynamic", granularity="block")
    assert set(reg.coefficients) == {"model.layers.0", "model.layers.1"}
    assert all(v == pytest.approx(0.5) for v in reg.coefficients.values())  # uniform before the first step
    total = reg()
    coefs, pens = reg.coefficients, reg.layer_penalties
    assert sum(coefs.values()) == pytest.approx(1.0)
    assert max(coefs, key=coefs.get) == max(pens, key=pens.get)  # the layer that moved most weighs most
    assert float(total) == pytest.approx(sum(coefs[k] * pens[k] for k in coefs), rel=1e-6)


def test_a_per_run_phase1_needs_its_seed(tiny_cfg, tmp_path):
    """importance.seed: run names no seed: recording without --seed stops with the fix, before any work."""
    from alr.core.errors import ConfigError
    from alr.importance.estimators import SI, get_estimator

    tiny_cfg["importance"]["seed"] = "run"
    with pytest.raises(ConfigError, match="alr importance --seed N"):
        get_estimator(SI).record(
            tiny_cfg, tmp_path / "no-model", tmp_path / "no-data", tmp_path / "si.safetensors", None
        )
