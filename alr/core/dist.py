"""Data-parallel helpers: alr trains through the transformers Trainer, which runs DDP by itself under
`torchrun` / `accelerate launch`; only what alr computes or writes outside the Trainer needs these."""

from __future__ import annotations

import torch


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """Rank 0 writes the outputs (every rank holds the same replicated weights and importance)."""
    import torch.distributed as dist

    return world_size() == 1 or dist.get_rank() == 0


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """Average a rank-local tensor in place: gradients that alr gathers from hooks see only the
    rank's own micro-batches, while DDP averages the parameter gradients the optimizer used."""
    if world_size() > 1:
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t.div_(world_size())
    return t
