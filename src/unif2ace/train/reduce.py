"""Per-step and per-log-window statistics, averaged over micro-steps and ranks.

Each optimizer step the loss and token count of all micro-batches of all ranks are summed
with one tiny all-reduce, giving the global per-step loss (mean over micro-batches) and the
global token count. Metric dicts may differ between micro-batches and ranks (mixed-task
batches: a captioning batch has no image loss), so each key is averaged over the micro-batches
that reported it, with the key set agreed across ranks at log time.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class StepStats:
    """Accumulates micro-step results; ``end_step`` per optimizer step, ``flush`` per log."""

    def __init__(self) -> None:
        self._loss: torch.Tensor | None = None
        self._micro = 0
        self._tokens = 0
        self.losses: list[float] = []
        self.grad_norms: list[float] = []
        self.lr = 0.0
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add_micro(self, loss: torch.Tensor, metrics: dict[str, float], n_tokens: int) -> None:
        """loss: detached scalar tensor; metrics: floats; n_tokens: tokens of this micro-batch."""
        loss = loss.detach().double()
        self._loss = loss if self._loss is None else self._loss + loss
        self._micro += 1
        self._tokens += int(n_tokens)
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.counts[k] = self.counts.get(k, 0) + 1

    def end_step(
        self, device: torch.device, grad_norm: torch.Tensor, lr: float, stop: bool = False
    ) -> tuple[int, bool]:
        """Close the step: record the global mean loss.

        Returns (global token count, whether any rank asked to stop). The stop request
        rides on the same all-reduce, so every rank stops after the same step.
        """
        extra = torch.tensor(
            [float(self._micro), float(self._tokens), float(stop)], dtype=torch.float64
        )
        vec = torch.cat([self._loss.to(device).reshape(1), extra.to(device)])
        if _distributed():
            dist.all_reduce(vec, op=dist.ReduceOp.SUM)
        loss_sum, micro, tokens, stops = vec.tolist()
        self.losses.append(loss_sum / micro)
        self.grad_norms.append(float(grad_norm))
        self.lr = lr
        self._loss, self._micro, self._tokens = None, 0, 0
        return int(tokens), stops > 0

    def flush(self, device: torch.device) -> dict[str, float]:
        """Window means over steps (loss, grad_norm), the last lr and metric means; resets."""
        keys = set(self.sums)
        if _distributed():
            everyone: list = [None] * dist.get_world_size()
            dist.all_gather_object(everyone, sorted(keys))
            keys = set().union(*everyone)
        keys = sorted(keys)
        row = {
            "loss": sum(self.losses) / max(len(self.losses), 1),
            "grad_norm": sum(self.grad_norms) / max(len(self.grad_norms), 1),
            "lr": self.lr,
        }
        if keys:
            vec = torch.tensor(
                [self.sums.get(k, 0.0) for k in keys] + [self.counts.get(k, 0) for k in keys],
                dtype=torch.float64,
                device=device,
            )
            if _distributed():
                dist.all_reduce(vec, op=dist.ReduceOp.SUM)
            vals = vec.tolist()
            n = len(keys)
            row.update({k: vals[i] / vals[n + i] for i, k in enumerate(keys) if vals[n + i] > 0})
        self.losses, self.grad_norms, self.sums, self.counts = [], [], {}, {}
        return row
