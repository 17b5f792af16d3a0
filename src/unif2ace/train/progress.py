"""A plain-text progress line: step, loss components, tokens/s, elapsed time and ETA.

Example::

    step   120/1000  12.0% | loss 2.3451 | img 1.9021 txt 0.4430 | lr 3.00e-04 |
    2,345 tok/s | 0:01:23 < 0:10:12

Rates are measured over this session only (a resumed run does not count the steps it loaded).
No tqdm: one line per log step, so it reads well in log files and ``tail -f``.
"""

from __future__ import annotations

import time


def format_duration(seconds: float) -> str:
    """H:MM:SS (or ``?`` when unknown)."""
    if seconds != seconds or seconds < 0 or seconds == float("inf"):  # NaN / inf
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Formats progress lines; ``line(step, metrics, tokens)`` after each logged step."""

    def __init__(self, total_steps: int, start_step: int = 0, clock=time.perf_counter):
        self.total, self.start_step, self.clock = total_steps, start_step, clock
        self.t0 = clock()
        self.tokens = 0

    def add_tokens(self, n: int) -> None:
        """Count tokens processed since the session began (global, all ranks)."""
        self.tokens += n

    def rates(self, step: int) -> tuple[float, float, float]:
        """(steps/s, tokens/s, ETA seconds) over this session."""
        dt = max(self.clock() - self.t0, 1e-9)
        done = step - self.start_step
        sps = done / dt
        eta = (self.total - step) / sps if sps > 0 else float("inf")
        return sps, self.tokens / dt, eta

    def line(self, step: int, metrics: dict[str, float]) -> str:
        """One progress line; ``metrics`` keys: "loss", "lr", anything else is a component."""
        _, tps, eta = self.rates(step)
        pct = 100.0 * step / max(self.total, 1)
        width = len(str(self.total))
        parts = [f"step {step:>{width}}/{self.total} {pct:5.1f}%"]
        if "loss" in metrics:
            parts.append(f"loss {metrics['loss']:.4f}")
        comps = [
            f"{k} {v:.4g}"
            for k, v in metrics.items()
            if k not in ("loss", "lr", "grad_norm") and isinstance(v, int | float)
        ]
        if comps:
            parts.append(" ".join(comps))
        if "grad_norm" in metrics:
            parts.append(f"gnorm {metrics['grad_norm']:.3g}")
        if "lr" in metrics:
            parts.append(f"lr {metrics['lr']:.2e}")
        parts.append(f"{tps:,.0f} tok/s")
        parts.append(f"{format_duration(self.clock() - self.t0)} < {format_duration(eta)}")
        return " | ".join(parts)
