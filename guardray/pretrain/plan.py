"""How many steps a GIP run takes: the same on every rank (pure).

Every rank takes exactly ``micro_per_epoch`` micro-batches per epoch (its data shard is cut
to that by `guardray.pretrain.data.iter_gip_batches`), so no rank waits in a collective for
another that ran out of data; a global step maps to (epoch, micro-batches to skip) for resume.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class LoopPlan:
    """How many steps a run takes (the same on every rank).

    Attributes:
        micro_per_epoch: micro-batches each rank takes per epoch (a multiple of grad_accum,
            at most what its data shard holds).
        grad_accum: micro-batches per optimizer step.
        total_steps: optimizer steps of the run.
    """

    micro_per_epoch: int
    grad_accum: int
    total_steps: int

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch."""
        return self.micro_per_epoch // self.grad_accum

    @property
    def epochs(self) -> int:
        """Epochs touched by the run (the last may be partial)."""
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def position(self, global_step: int) -> tuple[int, int]:
        """``(epoch, micro-batches already taken in that epoch)`` after ``global_step`` steps."""
        micro = global_step * self.grad_accum
        return micro // self.micro_per_epoch, micro % self.micro_per_epoch

    def micro_in_epoch(self, epoch: int) -> int:
        """Micro-batches the run takes in ``epoch`` (the last epoch may stop early)."""
        left = self.total_steps * self.grad_accum - epoch * self.micro_per_epoch
        return max(0, min(self.micro_per_epoch, left))


def plan_steps(batches_per_epoch: int, *, grad_accum: int, epochs: int,
               max_steps: int | None) -> LoopPlan:
    """The run's `LoopPlan`.

    Args:
        batches_per_epoch: micro-batches every rank's shard yields per epoch
            (`guardray.pretrain.data.steps_per_epoch`).
        grad_accum: micro-batches per optimizer step.
        epochs: passes over the data when ``max_steps`` is None.
        max_steps: exact optimizer steps (as many epochs as needed).

    Raises:
        ValueError: an epoch holds fewer micro-batches than one optimizer step needs.
    """
    opt_per_epoch = batches_per_epoch // grad_accum
    if opt_per_epoch < 1:
        raise ValueError(
            f"an epoch gives each worker {batches_per_epoch} micro-batch(es), fewer than "
            f"train.grad_accum={grad_accum}: lower grad_accum, batch_size or num_workers, or "
            "add data")
    total = max_steps if max_steps is not None else epochs * opt_per_epoch
    return LoopPlan(micro_per_epoch=opt_per_epoch * grad_accum, grad_accum=grad_accum,
                    total_steps=int(total))
