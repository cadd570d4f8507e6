"""The phase-2 penalty: lambda * sum_l alpha_l * sum_{i in l} Omega_i * (theta_i - theta*_i)^2.

For LoRA, theta - theta* is the adapter delta `scaling * B @ A` (phase 2 starts from the base
weights, so theta* = W and the reference delta is 0). The penalty is computed module by module by
`_LoraPenalty`, an autograd function that keeps only A, B and Omega for backward and rebuilds the
dense delta on the fly, so no module's dense delta outlives its own term.

Layer coefficients (`layer_coef`):
- `softmax_norm` (paper): alpha = softmax(n / tau) where n_l = ||Omega_l||_2 / mean_l ||Omega_l||_2.
  Dividing by the mean makes the coefficients independent of the importance scale; tau (default 1)
  sets how peaked they are, so one layer cannot take all the mass unless tau is made small.
- `uniform`: alpha_l = 1/L.
- `dynamic`: softmax over layers of the detached current per-layer penalties (also divided by their
  mean, over tau), recomputed every step; uniform while every penalty is zero.
- `sum`: alpha_l = 1 (plain EWC: lambda * sum F * delta^2, as the original EWC-LoRA).
"""
from __future__ import annotations

import re

import torch

LAYER_COEF_MODES = ("softmax_norm", "uniform", "dynamic", "sum")


def layer_key(module_name: str, granularity: str) -> str:
    """`module`: every adapted module is a layer; `block`: all modules of one transformer block."""
    if granularity == "module":
        return module_name
    if granularity == "block":
        m = re.search(r"^(.*?layers\.\d+)\.", module_name)
        return m.group(1) if m else module_name
    raise ValueError(f"layer granularity must be 'module' or 'block', got {granularity!r}")


def group_by_layer(names, granularity: str) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(layer_key(n, granularity), []).append(n)
    return groups


def _softmax_of_normalised(values: torch.Tensor, tau: float) -> torch.Tensor:
    mean = values.mean()
    if not torch.isfinite(mean) or mean <= 0:
        return torch.full_like(values, 1.0 / len(values))
    return torch.softmax(values / mean / tau, dim=0)


def layer_coefficients(importance: dict[str, torch.Tensor], groups: dict[str, list[str]], mode: str,
                       tau: float = 1.0) -> dict[str, float]:
    """Static coefficients per layer (for `dynamic` these are the starting, uniform values)."""
    if mode not in LAYER_COEF_MODES:
        raise ValueError(f"layer_coef must be one of {LAYER_COEF_MODES}, got {mode!r}")
    layers = list(groups)
    if mode == "sum":  # plain EWC: every layer counts fully
        return {layer: 1.0 for layer in layers}
    if mode in ("uniform", "dynamic"):
        return {layer: 1.0 / len(layers) for layer in layers}
    norms = torch.stack([torch.sqrt(sum(importance[n].double().square().sum() for n in groups[layer]))
                         for layer in layers])
    alpha = _softmax_of_normalised(norms, tau)
    return {layer: float(a) for layer, a in zip(layers, alpha)}


def layer_mean_importance(importance: dict[str, torch.Tensor], groups: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    """The `alr_no_element` ablation: every element of a layer gets that layer's mean importance."""
    out = {}
    for names in groups.values():
        total = sum(importance[n].double().sum() for n in names)
        count = sum(importance[n].numel() for n in names)
        for n in names:
            out[n] = torch.full_like(importance[n], float(total / count))
    return out


def normalise_mean(importance: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Divide by the mean over all elements: a global constant, so relative weights are unchanged,
    but lambda then has the same meaning for every importance estimator."""
    total = sum(t.double().sum() for t in importance.values())
    count = sum(t.numel() for t in importance.values())
    mean = float(total / count)
    if not mean > 0:
        raise ValueError("importance is zero everywhere; cannot normalise it by its mean")
    return {n: t / mean for n, t in importance.items()}


class _LoraPenalty(torch.autograd.Function):
    """sum(Omega * (s * B @ A - ref)^2) with gradients for A and B only."""

    @staticmethod
    def forward(ctx, lora_a, lora_b, omega, ref, scaling):
        diff = torch.mm(lora_b.float(), lora_a.float()).mul_(scaling)
        if ref is not None:
            diff.sub_(ref)
        ctx.save_for_backward(lora_a, lora_b, omega, ref)
        ctx.scaling = scaling
        return (diff.square_().mul_(omega)).sum()

    @staticmethod
    def backward(ctx, grad):
        lora_a, lora_b, omega, ref = ctx.saved_tensors
        s = ctx.scaling
        diff = torch.mm(lora_b.float(), lora_a.float()).mul_(s)
        if ref is not None:
            diff.sub_(ref)
        g = diff.mul_(omega).mul_(2.0 * s * grad)  # dP/d(delta) * s, reusing the buffer
        grad_b = torch.mm(g, lora_a.float().t()).to(lora_b.dtype)
        grad_a = torch.mm(lora_b.float().t(), g).to(lora_a.dtype)
        return grad_a, grad_b, None, None, None


def lora_penalty(module, omega: torch.Tensor, ref: torch.Tensor | None = None, adapter: str = "default") -> torch.Tensor:
    if getattr(module, "fan_in_fan_out", False) or module.use_dora.get(adapter, False):
        raise NotImplementedError("the penalty supports plain LoRA on nn.Linear (no fan_in_fan_out, no DoRA)")
    return _LoraPenalty.apply(module.lora_A[adapter].weight, module.lora_B[adapter].weight, omega, ref,
                              float(module.scaling[adapter]))


def param_penalty(param: torch.nn.Parameter, omega: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """sum(Omega * (theta - theta*)^2) for an ordinary trainable parameter (alr on full fine-tuning)."""
    return (param.float() - ref).square().mul(omega).sum()


def _term(target, omega, ref, adapter):
    if isinstance(target, torch.nn.Parameter):
        if ref is None:
            raise ValueError("a parameter penalty needs the reference weights theta*")
        return param_penalty(target, omega, ref)
    return lora_penalty(target, omega, ref, adapter)


class Regularizer:
    """Callable returning the total penalty; keeps the last per-layer penalties and coefficients.

    `modules` maps names to LoRA layers (penalty on `scaling * B @ A - ref`) or to trainable
    parameters (penalty on `theta - ref`, with `refs` holding theta*)."""

    def __init__(self, modules: dict, importance: dict[str, torch.Tensor], lam: float, layer_coef: str,
                 tau: float = 1.0, granularity: str = "module", refs: dict[str, torch.Tensor] | None = None,
                 adapter: str = "default"):
        self.modules, self.importance, self.lam = modules, importance, lam
        self.mode, self.tau, self.refs, self.adapter = layer_coef, tau, refs or {}, adapter
        self.groups = group_by_layer(modules, granularity)
        self.coefficients = layer_coefficients(importance, self.groups, layer_coef, tau)
        self.layer_penalties: dict[str, float] = {layer: 0.0 for layer in self.groups}

    def __call__(self) -> torch.Tensor:
        terms = []
        for layer, names in self.groups.items():
            terms.append(sum(_term(self.modules[n], self.importance[n], self.refs.get(n), self.adapter) for n in names))
        stacked = torch.stack(terms)
        detached = stacked.detach()
        self.layer_penalties = {layer: float(v) for layer, v in zip(self.groups, detached)}
        if self.mode == "dynamic":
            alpha = _softmax_of_normalised(detached.double(), self.tau).to(stacked.dtype)
            self.coefficients = {layer: float(a) for layer, a in zip(self.groups, alpha)}
        else:
            alpha = torch.tensor([self.coefficients[layer] for layer in self.groups], dtype=stacked.dtype,
                                 device=stacked.device)
        return self.lam * (alpha * stacked).sum()
