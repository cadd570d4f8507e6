"""Synaptic Intelligence (path-integral) importance, element-wise, in fp32.

    omega_i = sum_t -g_i(t) * dtheta_i(t)          (accumulated around every optimizer step)
    Omega_i = max(omega_i, 0) / ((theta_i(T) - theta_i(0))^2 + xi)

For LoRA the "parameter" is the dense frozen weight W of each adapted module: theta - theta_0 is the
adapter's delta `scaling * B @ A` (PEFT's `get_delta_weight`), and dtheta is the change of the delta
across the optimizer step, so the learning-rate schedule and AdamW are included in it.

The switches (`importance.*`, config/README.md), each with the authors' code (season1blue/HLoRA) as
one value:
- `gradient`: what g is. `dense` (default): dL/dW of the loss, accumulated from module hooks as
  `grad_output^T @ input` over the micro-batches of a step (W is never made trainable). `lora_sgd`
  (the authors): u = s * (B @ gA + gB @ A - lr * gB @ gA), the change of the dense delta that one
  plain SGD step on the factors would make, per unit of -lr, from the factor gradients the optimizer
  is about to use (so after gradient clipping) and the step's current learning rate.
- `clamp`: `final` (default) max(omega, 0) once, before dividing; `running` (the authors) omega is
  clamped at 0 after every step; `none` keeps negative contributions.
- `accumulate`: `run` (default) one Omega from the whole path; `per_epoch` (the authors) at the end of
  every epoch Omega += omega_epoch / (delta_since_start^2 + xi), then omega restarts from 0.

For ordinary trainable parameters (full fine-tuning, `alr_full`) g is the parameter's gradient as
backpropagated, accumulated by a tensor hook over the micro-batches: unclipped, as the dense g of
LoRA. Both paths pair the gradient of the loss with the update (clipping only shortens the update).

The recorder is independent of the Trainer: call `before_step(lr)` right before and `after_step()`
right after each optimizer step, `end_epoch()` at each epoch's end; `si_callback` does exactly that
for a transformers Trainer.
"""

from __future__ import annotations

import torch

from ..core.dist import mean_over_ranks

GRADIENTS = ("dense", "lora_sgd")
CLAMPS = ("final", "running", "none")
ACCUMULATIONS = ("run", "per_epoch")


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
    """theta = the adapter's dense delta; g = dL/dW from hooks (`dense`) or the authors' u (`lora_sgd`)."""

    def __init__(self, module, adapter: str = "default", gradient: str = "dense"):
        if gradient not in GRADIENTS:
            raise ValueError(f"importance.gradient must be one of {GRADIENTS}, got {gradient!r}")
        self.module, self.adapter, self.gradient = module, adapter, gradient
        base = module.get_base_layer()
        self.shape = tuple(base.weight.shape)
        self.grad = None
        self.handle = None
        if gradient == "dense":
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

    @torch.no_grad()
    def prepare(self, lr: float) -> None:
        """Right before the optimizer step: `lora_sgd` needs the factors and their gradients as the
        step will use them (DDP has already averaged the gradients); `dense` has its g already."""
        if self.gradient == "dense":
            return
        a, b = self.module.lora_A[self.adapter].weight, self.module.lora_B[self.adapter].weight
        if a.grad is None or b.grad is None:
            self.grad = torch.zeros(self.shape, dtype=torch.float32, device=a.device)
            return
        a32, b32, ga, gb = a.float(), b.float(), a.grad.float(), b.grad.float()
        self.grad = (b32 @ ga + gb @ a32 - lr * (gb @ ga)).mul_(float(self.module.scaling[self.adapter]))

    @torch.no_grad()
    def take_grad(self) -> torch.Tensor:
        if self.gradient == "lora_sgd":
            g, self.grad = self.grad, None
            return g
        g = mean_over_ranks(self.grad.clone())
        self.grad.zero_()
        return g

    def close(self) -> None:
        if self.handle is not None:
            self.handle.remove()


class _ParamTarget:
    """theta = the parameter itself; g = its gradient as backpropagated (before clipping)."""

    def __init__(self, param: torch.nn.Parameter):
        self.param = param
        self.shape = tuple(param.shape)
        self.grad = torch.zeros(self.shape, dtype=torch.float32, device=param.device)
        self.handle = param.register_hook(self._accumulate)

    def _accumulate(self, grad: torch.Tensor) -> None:
        self.grad.add_(grad.detach().float())

    @torch.no_grad()
    def value(self) -> torch.Tensor:
        return self.param.detach().float().clone()

    def prepare(self, lr: float) -> None:
        pass

    def take_grad(self) -> torch.Tensor:
        g = mean_over_ranks(self.grad.clone())
        self.grad.zero_()
        return g

    def close(self) -> None:
        self.handle.remove()


class SIRecorder:
    def __init__(self, targets: dict[str, object], xi: float, clamp: str = "final", accumulate: str = "run"):
        if clamp not in CLAMPS:
            raise ValueError(f"importance.clamp must be one of {CLAMPS}, got {clamp!r}")
        if accumulate not in ACCUMULATIONS:
            raise ValueError(f"importance.accumulate must be one of {ACCUMULATIONS}, got {accumulate!r}")
        self.targets, self.xi, self.clamp, self.accumulate = targets, xi, clamp, accumulate
        self.start = {n: t.value() for n, t in targets.items()}
        self.omega = {
            n: torch.zeros(t.shape, dtype=torch.float32, device=self.start[n].device) for n, t in targets.items()
        }
        # per_epoch only (one more fp32 copy of every target): the sum of the epoch terms
        self.total = {n: torch.zeros_like(w) for n, w in self.omega.items()} if accumulate == "per_epoch" else {}
        self._before: dict[str, torch.Tensor] = {}
        self.steps = 0
        self._steps_in_epoch = 0
        self.epoch_terms = 0  # per_epoch: how many epoch terms Omega sums

    @classmethod
    def for_lora(
        cls,
        model,
        xi: float,
        clamp: str = "final",
        accumulate: str = "run",
        gradient: str = "dense",
        adapter: str = "default",
    ) -> SIRecorder:
        """One target per LoRA-wrapped module, named like the base model's module."""
        from ..model.load import lora_modules

        targets = {name: _LoraTarget(module, adapter, gradient) for name, module in lora_modules(model).items()}
        if not targets:
            raise ValueError("the model has no LoRA layers to record importance for")
        return cls(targets, xi, clamp, accumulate)

    @classmethod
    def for_parameters(cls, named_params, xi: float, clamp: str = "final", accumulate: str = "run") -> SIRecorder:
        return cls({n: _ParamTarget(p) for n, p in named_params if p.requires_grad}, xi, clamp, accumulate)

    def before_step(self, lr: float = 0.0) -> None:
        """`lr`: the learning rate of the coming step (read only by gradient `lora_sgd`)."""
        self._before = {}
        for n, t in self.targets.items():
            self._before[n] = t.value()
            t.prepare(lr)

    @torch.no_grad()
    def after_step(self) -> None:
        for n, t in self.targets.items():
            after = t.value()
            # omega += -g * dtheta, fused: omega.addcmul_(g, dtheta, value=-1)
            self.omega[n].addcmul_(t.take_grad(), after - self._before[n], value=-1.0)
            if self.clamp == "running":
                self.omega[n].clamp_min_(0)
        self._before = {}
        self.steps += 1
        self._steps_in_epoch += 1

    @torch.no_grad()
    def _term(self, name: str) -> torch.Tensor:
        omega = self.omega[name].clamp_min(0) if self.clamp == "final" else self.omega[name]
        return omega / ((self.targets[name].value() - self.start[name]).square() + self.xi)

    @torch.no_grad()
    def end_epoch(self) -> None:
        """With `per_epoch`: add this epoch's term to Omega and restart omega (no-op after no step)."""
        if self.accumulate != "per_epoch" or not self._steps_in_epoch:
            return
        for n in self.targets:
            self.total[n].add_(self._term(n))
            self.omega[n].zero_()
        self._steps_in_epoch = 0
        self.epoch_terms += 1

    @torch.no_grad()
    def importance(self) -> dict[str, torch.Tensor]:
        if self.accumulate == "per_epoch":
            self.end_epoch()  # a run cut by max_steps inside an epoch: its last, partial epoch counts too
            return {n: t.clone() for n, t in self.total.items()}
        return {n: self._term(n) for n in self.targets}

    def close(self) -> None:
        for t in self.targets.values():
            t.close()


def si_callback(recorder: SIRecorder):
    from transformers import TrainerCallback

    class SICallback(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
            recorder.before_step(optimizer.param_groups[0]["lr"] if optimizer is not None else 0.0)

        def on_optimizer_step(self, args, state, control, **kwargs):
            recorder.after_step()

        def on_epoch_end(self, args, state, control, **kwargs):
            recorder.end_epoch()

    return SICallback()
