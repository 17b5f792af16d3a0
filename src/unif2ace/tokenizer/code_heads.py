"""Attribute heads on the codes: a stage-1 training term that asks the LFQ bits around a
fine attribute's landmarks to carry it.

The probes (:mod:`.probe`) find the fine attributes lost in the codes: a linear read of the
code bits around the eyes tells eye colour no better than the majority class, while the
original pixels tell it 99 % of the time (docs/training.md). Pixel losses alone let the
encoder spend its 12 bits per cell on what dominates the pixels (skin, hair, shading).

This term fits, during stage-1 training, one linear classifier per fine attribute on the
straight-through ±1 bits of the ``window × window`` code cells around the landmarks the
attribute is drawn at (the probe's ``codes`` features), and adds its cross-entropy, weighted
by ``attr_weight``, to the tokenizer loss. The gradient reaches the encoder through the
straight-through estimator, so the encoder learns to put the attribute into those bits in a
form a linear read finds, and the decoder (trained by the pixel losses on the same bits) can
draw it. The heads serve training only: they are saved in the trainer checkpoint
(``code_heads.safetensors``), never in the tokenizer folder, so a tokenizer trained with them
has the same format as any other.

It needs labelled faces with landmarks (FaceForge): a face enters an attribute's term only
where its label is present and visible (not ``hidden``); imported photos add nothing.

Shape legend: B batch, D code bits, h/w code grid, N faces of one attribute.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .probe import PROBED, cell_block

HEADS_FILE = "code_heads"  # extra module name in the trainer checkpoint


def attribute_classes(attr: str) -> tuple[str, ...]:
    """The class names of a supervised attribute: its values, or ``False``/``True``."""
    from ..data.ontology import BY_NAME

    a = BY_NAME[attr]
    return ("False", "True") if a.is_binary else tuple(a.values)


class CodeAttributeHeads(nn.Module):
    """One linear classifier per attribute of :data:`probe.PROBED` on the code bits around
    its landmarks (module docstring)."""

    def __init__(
        self,
        bits: int,
        downsample: int,
        window: int = 3,
        attributes: Sequence[str] = tuple(PROBED),
    ):
        super().__init__()
        unknown = sorted(set(attributes) - set(PROBED))
        if unknown:
            raise UserError(f"no code head for {unknown}; supervised: {sorted(PROBED)}")
        self.downsample, self.window = downsample, window
        self.classes = {a: attribute_classes(a) for a in attributes}
        self.heads = nn.ModuleDict(
            {
                a: nn.Linear(len(PROBED[a]) * bits * window * window, len(c))
                for a, c in self.classes.items()
            }
        )

    def forward(
        self,
        quantized_BDHW: torch.Tensor,
        landmarks: Sequence[dict | None],
        labels: Sequence[tuple[dict, set] | None],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean cross-entropy over the attributes some face of the batch shows, and each
        attribute's batch accuracy (``attr_acc_<name>``). ``labels``: per face
        ``(attribute values, hidden attribute names)`` or ``None``."""
        q = quantized_BDHW.float()
        losses, metrics = [], {}
        for attr, head in self.heads.items():
            rows, points, ys = [], [], []
            for n, (lm, lab) in enumerate(zip(landmarks, labels, strict=True)):
                if lm is None or lab is None:
                    continue
                values, hidden = lab
                cls = str(values.get(attr))
                if attr in hidden or cls not in self.classes[attr]:
                    continue
                rows.append(n)
                points.append([lm[k][:2] for k in PROBED[attr]])
                ys.append(self.classes[attr].index(cls))
            if not rows:
                continue
            logits = head(cell_block(q[rows], points, self.downsample, self.window))
            y = torch.tensor(ys, device=logits.device)
            losses.append(F.cross_entropy(logits, y))
            metrics[f"attr_acc_{attr}"] = (logits.argmax(1) == y).float().mean().detach()
        loss = torch.stack(losses).mean() if losses else q.sum() * 0.0
        return loss, metrics
