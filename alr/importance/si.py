"""Synaptic Intelligence (path-integral) importance, element-wise, in fp32.

    omega_i = sum_t -g_i(t) * dtheta_i(t)          (accumulated around every optimizer step)
    Omega_i = max(omega_i, 0) / ((theta_i(T) - theta_i(0))^2 + xi)

For LoRA the "parameter" is the dense frozen weight W of each adapted module: theta - theta_0 is the
adapter's delta `scaling * B @ A` (PEFT's `get_delta_weight`), and g = dL/dW of the *unregularised*
loss is accumulated from module hooks as `grad_output^T @ input` over all micro-batches of a step
(W itself is never made trainable). dtheta is the change of the delta across the optimizer step, so
gradient clipping, the learning-rate schedule and AdamW are all included in it.

For ordinary trainable parameters (full fine-tuning) g is `p.grad` just before the optimizer step
(after clipping) and theta is `p` itself.

The recorder is independent of the Trainer: call `before_step()` right before and `after_step()`
right after each optimizer step; `SICallback` does exactly that for a transformers Trainer.
"""
from __future__ import annotations

import torch

from ..dist import mean_over_ranks


def _add_product_fp32(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """acc += a @ b with an fp32 accumulator. Half-precision operands are multiplied in their own
    dtype (tensor cores; fp32 output where torch offers it, on CUDA) instead of being copied to fp32
    first: an fp32 product would make recording cost as much as a second backward pass."""
    if a.dtype == torch.float32:
        acc.addmm_(a, b)
        return
    if a.is_cuda:
        try:
            acc.add_(torch.mm(a, b, out_dtype=torch.float32))
            return
        except (TypeError, RuntimeError):  # torch without mm(out_dtype=...)
            pass
    acc.add_(torch.mm(a, b))


class _LoraTarget:
    """theta = the adapter's dense delta; g accumulated from hooks on the wrapped layer."""

    def __init__(self, module, adapter: str = "default"):
        self.module, self.adapter = module, adapter
        base = module.get_base_layer()
        self.shape = tuple(base.weight.shape)
        self.grad = torch.zeros(self.shape, dtype=torch.float32, device=base.weight.device)
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        if not torch.is_grad_enabled() or not output.requires_grad:
            return
        x = args[0].detach()

        def accumulate(grad_out):
            g = grad_out.reshape(-1, grad_out.shape[-1])
            _add_product_fp32(self.grad, g.t(), x.reshape(-1, x.shape[-1]).to(g.dtype))

        output.register_hook(accumulate)

    @torch.no_grad()
    def value(self) -> torch.Tensor:
        return self.module.get_delta_weight(self.adapter).float()

    def take_grad(self) -> torch.Tensor:
        g = mean_over_ranks(self.grad.clone())
        self.grad.zero_()
        return g

    def close(self) -> None:
        self.handle.remove()


class _ParamTarget:
    """theta = the parameter itself; g = its .grad just before the optimizer step."""

    def __init__(self, param: torch.nn.Parameter):
        self.param = param
        self.shape = tuple(param.shape)

    @torch.no_grad()
    def value(self) -> torch.Tensor:
        return self.param.detach().float().clone()

    def take_grad(self) -> torch.Tensor:
        if self.param.grad is None:
            return torch.zeros(self.shape, dtype=torch.float32, device=self.param.device)
        return self.param.grad.detach().float()

    def close(self) -> None:
        pass


class SIRecorder:
    def __init__(self, targets: dict[str, object]):
        self.targets = targets
        self.start = {n: t.value() for n, t in targets.items()}
        self.omega = {n: torch.zeros(t.shape, dtype=torch.float32, device=self.start[n].device)
                      for n, t in targets.items()}
        self._before: dict[str, torch.Tensor] = {}
        self.steps = 0

    @classmethod
    def for_lora(cls, model, adapter: str = "default") -> "SIRecorder":
        """One target per LoRA-wrapped module, named like the base model's module."""
        from ..models import lora_modules

        targets = {name: _LoraTarget(module, adapter) for name, module in lora_modules(model).items()}
        if not targets:
            raise ValueError("the model has no LoRA layers to record importance for")
        return cls(targets)

    @classmethod
    def for_parameters(cls, named_params) -> "SIRecorder":
        return cls({n: _ParamTarget(p) for n, p in named_params if p.requires_grad})

    def before_step(self) -> None:
        self._before = {n: t.value() for n, t in self.targets.items()}

    @torch.no_grad()
    def after_step(self) -> None:
        for n, t in self.targets.items():
            after = t.value()
            # omega += -g * dtheta, fused: omega.addcmul_(g, dtheta, value=-1)
            self.omega[n].addcmul_(t.take_grad(), after - self._before[n], value=-1.0)
        self._before = {}
        self.steps += 1

    @torch.no_grad()
    def importance(self, xi: float, clamp: bool = True) -> dict[str, torch.Tensor]:
        out = {}
        for n, t in self.targets.items():
            total = t.value() - self.start[n]
            omega = self.omega[n].clamp_min(0) if clamp else self.omega[n]
            out[n] = omega / (total.square() + xi)
        return out

    def close(self) -> None:
        for t in self.targets.values():
            t.close()


def si_callback(recorder: SIRecorder):
    from transformers import TrainerCallback

    class SICallback(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            recorder.before_step()

        def on_optimizer_step(self, args, state, control, **kwargs):
            recorder.after_step()

    return SICallback()
