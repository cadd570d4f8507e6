"""The phase-2 penalty: lambda * sum_l alpha_l * sum_{i in l} Omega_i * (theta_i - theta*_i)^2.

For LoRA, theta - theta* is the adapter delta `scaling * B @ A` (phase 2 starts from the base
weights, so theta* = W and the reference delta is 0). The penalty is computed module by module by
`_StackedLoraPenalty`: modules of the same shape are stacked and handled by one batched matrix
product, and the dense deltas are rebuilt in backward rather than kept, so the transient memory is
one stack's delta and the step cost a few passes over Omega.

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

import math
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
        raise ValueError(f"importance has mean {mean:.3g} over all elements (zero everywhere, or negative path "
                         "contributions kept by importance.clamp: false outweigh the rest); cannot normalise it "
                         "by its mean: use regularize.normalize: none")
    return {n: t / mean for n, t in importance.items()}


def _lora_delta(a: torch.Tensor, b: torch.Tensor, ref: torch.Tensor | None, scaling: float) -> torch.Tensor:
    """s * B @ A - ref for stacks of modules ([k, out, r] @ [k, r, in]), in fp32, one fused kernel."""
    a32, b32 = a.float(), b.float()
    if ref is None:
        return torch.bmm(b32, a32).mul_(scaling)
    return torch.baddbmm(ref, b32, a32, beta=-1.0, alpha=scaling)


class _StackedLoraPenalty(torch.autograd.Function):
    """Per module of a same-shape stack: sum(Omega * (s * B @ A - ref)^2), gradients for A and B only.

    One batched matrix product covers every module of the stack, and the dense deltas are rebuilt in
    backward instead of being kept, so the penalty costs a few passes over Omega per step."""

    @staticmethod
    def forward(ctx, a, b, omega, ref, scaling):
        ctx.save_for_backward(a, b, omega, ref)
        ctx.scaling = scaling
        return _lora_delta(a, b, ref, scaling).square_().mul_(omega).sum(dim=(1, 2))

    @staticmethod
    def backward(ctx, grad):
        a, b, omega, ref = ctx.saved_tensors
        s = ctx.scaling
        g = _lora_delta(a, b, ref, s).mul_(omega).mul_(grad.view(-1, 1, 1) * (2.0 * s))  # dP/d(delta) * s
        grad_b = torch.bmm(g, a.float().transpose(1, 2)).to(b.dtype)
        grad_a = torch.bmm(b.float().transpose(1, 2), g).to(a.dtype)
        return grad_a, grad_b, None, None, None


def param_penalty(param: torch.nn.Parameter, omega: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """sum(Omega * (theta - theta*)^2) for an ordinary trainable parameter (alr on full fine-tuning)."""
    return (param.float() - ref).square().mul(omega).sum()


MAX_STACK_ELEMENTS = 2**26  # 256 MiB of fp32 per stacked delta; bounds the penalty's transient memory


class _LoraStack:
    """Same-shape LoRA modules whose penalties are computed together."""

    def __init__(self, names, modules, importance, refs, adapter):
        self.names = names
        self.a = [modules[n].lora_A[adapter].weight for n in names]
        self.b = [modules[n].lora_B[adapter].weight for n in names]
        self.scaling = float(modules[names[0]].scaling[adapter])
        self.omega = torch.stack([importance[n].float() for n in names])
        self.ref = torch.stack([refs[n].float() for n in names]) if names[0] in refs else None

    def penalties(self) -> torch.Tensor:
        return _StackedLoraPenalty.apply(torch.stack(self.a), torch.stack(self.b), self.omega, self.ref, self.scaling)


class _ParamTerm:
    def __init__(self, name, param, omega, ref):
        if ref is None:
            raise ValueError("a parameter penalty needs the reference weights theta*")
        self.names, self.param, self.omega, self.ref = [name], param, omega, ref

    def penalties(self) -> torch.Tensor:
        return param_penalty(self.param, self.omega, self.ref).reshape(1)


def _penalty_terms(modules: dict, importance: dict, refs: dict, adapter: str) -> list:
    """LoRA modules grouped by (shape, scaling, reference or not) into stacks of bounded size;
    ordinary parameters one term each."""
    terms, stacks = [], {}
    for n, target in modules.items():
        if isinstance(target, torch.nn.Parameter):
            terms.append(_ParamTerm(n, target, importance[n], refs.get(n)))
            continue
        if getattr(target, "fan_in_fan_out", False) or target.use_dora.get(adapter, False):
            raise NotImplementedError("the penalty supports plain LoRA on nn.Linear (no fan_in_fan_out, no DoRA)")
        key = (tuple(target.get_base_layer().weight.shape), float(target.scaling[adapter]), n in refs)
        stacks.setdefault(key, []).append(n)
    for (shape, _, _), names in stacks.items():
        per_stack = max(1, MAX_STACK_ELEMENTS // math.prod(shape))
        for i in range(0, len(names), per_stack):
            terms.append(_LoraStack(names[i:i + per_stack], modules, importance, refs, adapter))
    return terms


class Regularizer:
    """Callable returning the total penalty; keeps the last per-layer penalties and coefficients.

    `modules` maps names to LoRA layers (penalty on `scaling * B @ A - ref`) or to trainable
    parameters (penalty on `theta - ref`, with `refs` holding theta*)."""

    def __init__(self, modules: dict, importance: dict[str, torch.Tensor], lam: float, layer_coef: str,
                 tau: float = 1.0, granularity: str = "module", refs: dict[str, torch.Tensor] | None = None,
                 adapter: str = "default"):
        self.lam, self.mode, self.tau = lam, layer_coef, tau
        self.groups = group_by_layer(modules, granularity)
        self.coefficients = layer_coefficients(importance, self.groups, layer_coef, tau)
        self.layer_penalties: dict[str, float] = {layer: 0.0 for layer in self.groups}
        self.terms = _penalty_terms(modules, importance, refs or {}, adapter)
        layer_of = {n: i for i, names in enumerate(self.groups.values()) for n in names}
        device = next(iter(importance.values())).device
        self.layer_index = [torch.tensor([layer_of[n] for n in t.names], device=device) for t in self.terms]

    def __call__(self) -> torch.Tensor:
        stacked = None
        for term, index in zip(self.terms, self.layer_index):
            pens = term.penalties()
            if stacked is None:
                stacked = torch.zeros(len(self.groups), dtype=pens.dtype, device=pens.device)
            stacked = stacked.index_add(0, index, pens)
        detached = stacked.detach()
        self.layer_penalties = {layer: float(v) for layer, v in zip(self.groups, detached.tolist())}
        if self.mode == "dynamic":
            alpha = _softmax_of_normalised(detached.double(), self.tau).to(stacked.dtype)
            self.coefficients = {layer: float(a) for layer, a in zip(self.groups, alpha)}
        else:
            alpha = torch.tensor([self.coefficients[layer] for layer in self.groups], dtype=stacked.dtype,
                                 device=stacked.device)
        return self.lam * (alpha * stacked).sum()
