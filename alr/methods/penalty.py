"""The phase-2 penalty: lambda * sum_l alpha_l * sum_{i in l} Omega_i * (theta_i - theta*_i)^2.

For LoRA, theta - theta* is the adapter delta `scaling * B @ A` (phase 2 starts from the base
weights, so theta* = W and the reference delta is 0). The penalty is computed module by module by
`_StackedLoraPenalty`: modules of the same shape are stacked and handled by one batched matrix
product, and the dense deltas are rebuilt in backward rather than kept, so the transient memory is
one stack's delta and the step cost a few passes over Omega.

Layer coefficients (`layer_coef`), from n_l, the norm of layer l's importance (`layer_norm`: `l2`
= ||Omega_l||_2 as the paper; `rms` = ||Omega_l||_2 / sqrt(elements), which does not grow with a
layer's size: under `l2` equal per-element importance gives a 576x576 q_proj sqrt(3) times the norm
of a 192x576 v_proj):
- `softmax_norm` (paper): alpha = softmax(x / tau), x_l = n_l / mean_l n_l (`layer_scale: mean`, the
  default: independent of the importance scale, so one layer cannot take all the mass unless tau is
  made small) or x_l = c * n_l (`layer_scale: c`; the authors' code: softmax(1e-8 * ||Omega_l||_2) on
  the raw importance).
- `uniform`: alpha_l = 1/L (`uniform_coef: layers`), 1/B for B transformer blocks (`blocks`: the
  authors' no-layer ablation, 1/28 for 56 modules of 28 blocks) or a given number.
- `dynamic`: softmax over layers of the detached current per-layer penalties (divided by their mean,
  over tau), recomputed every step; uniform while every penalty is zero.
- `sum`: alpha_l = 1 (plain EWC: lambda * sum F * delta^2, as the original EWC-LoRA).

Importance transforms before the penalty (`normalize`): `mean` divides by the mean over all elements;
`int8_rows` is the Fisher as the original EWC-LoRA used it (`int8_rows`).
"""

from __future__ import annotations

import math
import re

import torch

from ..core.errors import ConfigError

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


def _softmax_of_normalised(values: torch.Tensor, tau: float, scale="mean") -> torch.Tensor:
    if scale != "mean":
        return torch.softmax(values * float(scale) / tau, dim=0)
    mean = values.mean()
    if not torch.isfinite(mean) or mean <= 0:
        return torch.full_like(values, 1.0 / len(values))
    return torch.softmax(values / mean / tau, dim=0)


def layer_norms(importance: dict[str, torch.Tensor], groups: dict[str, list[str]], norm: str = "l2") -> torch.Tensor:
    """n_l per layer, in float64: the L2 norm of all its elements, or that over sqrt(count) (`rms`)."""
    if norm not in ("l2", "rms"):
        raise ValueError(f"regularize.layer_norm must be 'l2' or 'rms', got {norm!r}")
    out = []
    for names in groups.values():
        l2 = torch.sqrt(sum(importance[n].double().square().sum() for n in names))
        out.append(l2 / math.sqrt(sum(importance[n].numel() for n in names)) if norm == "rms" else l2)
    return torch.stack(out)


def uniform_coefficient(groups: dict[str, list[str]], uniform="layers") -> float:
    """alpha_l of `layer_coef: uniform`: 1/layers, 1/transformer blocks (the authors' fixed 1/28), or a number."""
    if uniform == "layers":
        return 1.0 / len(groups)
    if uniform == "blocks":
        return 1.0 / len(group_by_layer([n for names in groups.values() for n in names], "block"))
    return float(uniform)


def layer_coefficients(
    importance: dict[str, torch.Tensor],
    groups: dict[str, list[str]],
    mode: str,
    tau: float = 1.0,
    norm: str = "l2",
    scale="mean",
    uniform="layers",
) -> dict[str, float]:
    """Static coefficients per layer (for `dynamic` these are the starting, uniform values)."""
    if mode not in LAYER_COEF_MODES:
        raise ValueError(f"layer_coef must be one of {LAYER_COEF_MODES}, got {mode!r}")
    layers = list(groups)
    if mode == "sum":  # plain EWC: every layer counts fully
        return dict.fromkeys(layers, 1.0)
    if mode == "dynamic":
        return {layer: 1.0 / len(layers) for layer in layers}
    if mode == "uniform":
        return {layer: uniform_coefficient(groups, uniform) for layer in layers}
    alpha = _softmax_of_normalised(layer_norms(importance, groups, norm), tau, scale)
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


def shuffle_within_modules(importance: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """The `alr_shuffled` control: each module's importance values permuted among its own elements
    (a fixed permutation per seed and module), so every norm and layer coefficient is unchanged and
    only which element gets which value is lost."""
    out = {}
    for i, (name, t) in enumerate(sorted(importance.items())):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
        order = torch.randperm(t.numel(), generator=gen).to(t.device)
        out[name] = t.flatten()[order].reshape(t.shape)
    return out


ELEMENT_TRANSFORMS = {
    "importance": lambda importance, groups, seed: importance,
    "layer_mean": lambda importance, groups, seed: layer_mean_importance(importance, groups),
    "shuffled": lambda importance, groups, seed: shuffle_within_modules(importance, seed),
}


def normalise_mean(importance: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Divide by the mean over all elements: a global constant, so relative weights are unchanged,
    but lambda then has the same meaning for every importance estimator."""
    total = sum(t.double().sum() for t in importance.values())
    count = sum(t.numel() for t in importance.values())
    mean = float(total / count)
    if not mean > 0:
        raise ConfigError(
            f"importance has mean {mean:.3g} over all elements (zero everywhere, or negative path "
            "contributions kept by importance.clamp: none outweigh the rest); cannot normalise it "
            "by its mean: use regularize.normalize: none"
        )
    return {n: t / mean for n, t in importance.items()}


def int8_rows(importance: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The Fisher as the original EWC-LoRA used it. It loads the Fisher checkpoint with
    `load_in_8bit=True` (bitsandbytes 0.39.0) and multiplies the penalty by the weights it then holds:
    `Int8Params.cuda` casts each weight to fp16 and keeps only the row-wise int8 code of
    `double_quant` (threshold 0), `rint(x * 127 / max_j |x_ij|)` per row i (round half to even);
    the row scale is kept apart and never applied. So each row of F becomes 0..127 relative to its
    own maximum. A row that is 0 everywhere stays 0 (bitsandbytes would divide by zero there). Only
    weight matrices were quantized (Linear layers), so only 2-d tensors are accepted."""
    out = {}
    for name, t in importance.items():
        if t.dim() != 2:
            raise ValueError(f"int8_rows rescales the rows of weight matrices; {name!r} has shape {tuple(t.shape)}")
        half = t.detach().to(torch.float16).float()
        absmax = half.abs().amax(dim=1, keepdim=True)
        scale = torch.where(absmax > 0, 127.0 / absmax, torch.zeros_like(absmax))
        out[name] = torch.round(half * scale).to(t.dtype)
    return out


NORMALIZATIONS = {"none": lambda importance: importance, "mean": normalise_mean, "int8_rows": int8_rows}


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
            terms.append(_LoraStack(names[i : i + per_stack], modules, importance, refs, adapter))
    return terms


class Regularizer:
    """Callable returning the total penalty; keeps the last per-layer penalties and coefficients.

    `modules` maps names to LoRA layers (penalty on `scaling * B @ A - ref`) or to trainable
    parameters (penalty on `theta - ref`, with `refs` holding theta*)."""

    def __init__(
        self,
        modules: dict,
        importance: dict[str, torch.Tensor],
        lam: float,
        layer_coef: str,
        tau: float = 1.0,
        granularity: str = "module",
        refs: dict[str, torch.Tensor] | None = None,
        adapter: str = "default",
        layer_norm: str = "l2",
        layer_scale="mean",
        uniform_coef="layers",
    ):
        self.lam, self.mode, self.tau = lam, layer_coef, tau
        self.groups = group_by_layer(modules, granularity)
        self.coefficients = layer_coefficients(
            importance, self.groups, layer_coef, tau, layer_norm, layer_scale, uniform_coef
        )
        self.layer_penalties: dict[str, float] = dict.fromkeys(self.groups, 0.0)
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
            alpha = torch.tensor(
                [self.coefficients[layer] for layer in self.groups], dtype=stacked.dtype, device=stacked.device
            )
        return self.lam * (alpha * stacked).sum()
