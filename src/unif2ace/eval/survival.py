"""Do fine attributes survive the image tokenizer? The judge on originals vs reconstructions.

TARGETS.md: fine attributes (earrings, eye colour, freckles, moles) must still be recognised
after ``decode(encode(x))`` at >= 97 % of the judge's accuracy on the originals. The judge
sees both at the tokenizer's resolution, so the comparison isolates the tokenizer.
"""

from __future__ import annotations

import math

import torch

FINE_ATTRIBUTES: tuple[str, ...] = ("earrings", "eye_color", "freckles", "moles", "lipstick")


@torch.no_grad()
def attribute_survival(
    tokenizer, judge, data: str, split: str = "test", num: int = 500, batch_size: int = 32
) -> dict:
    """Judge accuracy on ``num`` originals and their reconstructions, overall, per attribute
    and for :data:`FINE_ATTRIBUTES`; ``ratio`` = reconstructed / original accuracy."""
    from ..tokenizer.images import png_to_tensor, tensor_to_uint8
    from .evaluate import load_records
    from .judge import attribute_accuracy, predict

    recs = load_records(data, split, num, ["image", "attributes", "hidden"])
    res = tokenizer.config.resolution
    orig, recon = [], []
    for i in range(0, len(recs), batch_size):
        x = torch.stack([png_to_tensor(r["image"], res) for r in recs[i : i + batch_size]])
        orig.append(torch.from_numpy(tensor_to_uint8(x)).permute(0, 3, 1, 2))
        y = tokenizer.decode(tokenizer.encode(x))
        recon.append(torch.from_numpy(tensor_to_uint8(y)).permute(0, 3, 1, 2))
    labels = [r["labels"] for r in recs]
    hidden = [set(r["hidden"] or ()) for r in recs]
    a = attribute_accuracy(predict(judge, torch.cat(orig)), labels, hidden)
    b = attribute_accuracy(predict(judge, torch.cat(recon)), labels, hidden)
    per = {
        name: {
            "original": acc,
            "reconstructed": b["per_attribute"].get(name, math.nan),
            "ratio": _ratio(b["per_attribute"].get(name, math.nan), acc),
        }
        for name, acc in a["per_attribute"].items()
    }
    fine = {k: per[k] for k in FINE_ATTRIBUTES if k in per}
    return {
        "images": len(recs),
        "original": a["overall"],
        "reconstructed": b["overall"],
        "ratio": _ratio(b["overall"], a["overall"]),
        "fine_ratio": min((v["ratio"] for v in fine.values()), default=math.nan),
        "fine": fine,
        "per_attribute": per,
    }


def _ratio(x: float, ref: float) -> float:
    return x / ref if ref and not math.isnan(ref) else math.nan
