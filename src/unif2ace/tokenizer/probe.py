"""Where a fine attribute is lost: linear probes on the codes, the originals and the
reconstructions around the attribute's landmarks.

Attribute survival (:mod:`unif2ace.eval.survival`) says *that* an attribute does not survive
reconstruction; a probe says *where* it is lost. For each fine attribute, three feature sets
are read around the landmarks the renderer drew it at (FaceForge records carry them,
:mod:`.regions`):

- ``codes``: the ±1 LFQ bits of a ``window × window`` block of code cells around each landmark;
- ``pixels``: a ``crop × crop`` pixel patch of the original around each landmark;
- ``reconstruction``: the same patch of the tokenizer's reconstruction.

A multinomial logistic regression (standardised features, L2 chosen on the last fifth of the
training faces) is fitted on each set and scored on held-out faces. Reading: ``pixels`` high
and ``codes`` near the ``majority`` rate means the quantiser drops the attribute (a better
decoder cannot bring it back: more bits, or an encoder that spends them there, are needed);
``codes`` high and ``reconstruction`` low means the decoder loses what the codes hold (stage 2,
:mod:`.train_decoder`). Probes are linear, so each figure is a lower bound on what a feature
set holds; the reconstruction is a function of every code, not only of the window.

Shape legend: N faces, F features, K classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import UserError
from .autoencoder import LFQAutoencoder
from .images import png_to_tensor
from .lfq import codes_to_bits
from .regions import record_landmarks

# attribute -> the landmarks it is drawn at (keys of :func:`regions.record_landmarks`)
PROBED: dict[str, tuple[str, ...]] = {
    "eye_color": ("left_eye", "right_eye"),
    "earrings": ("left_lobe", "right_lobe"),
    "lipstick": ("mouth",),
    "freckles": ("left_cheek", "right_cheek"),
    "moles": ("mole",),
}
FEATURE_SETS = ("codes", "pixels", "reconstruction")
L2_GRID = (1e-4, 1e-3, 1e-2)


def cell_block(
    bits_NDhw: torch.Tensor, points: Sequence[Sequence[tuple[float, float]]], f: int, window: int
) -> torch.Tensor:
    """The code bits of a ``window × window`` block of cells around each point ``(x, y)`` (in
    pixels; blocks clamped inside the grid), concatenated per face -> ``(N, F)``."""
    h, w = bits_NDhw.shape[-2:]
    if window > min(h, w):
        raise UserError(f"probe window {window} exceeds the {h}x{w} code grid")
    out = []
    for n, pts in enumerate(points):
        parts = []
        for x, y in pts:
            i = min(max(int(y // f) - window // 2, 0), h - window)
            j = min(max(int(x // f) - window // 2, 0), w - window)
            parts.append(bits_NDhw[n, :, i : i + window, j : j + window].reshape(-1))
        out.append(torch.cat(parts))
    return torch.stack(out)


def pixel_patch(
    images_NCHW: torch.Tensor, points: Sequence[Sequence[tuple[float, float]]], crop: int
) -> torch.Tensor:
    """The ``crop × crop`` patch centred on each point (clamped inside the image),
    concatenated per face -> ``(N, F)``."""
    H, W = images_NCHW.shape[-2:]
    if crop > min(H, W):
        raise UserError(f"probe crop {crop} exceeds the {H}x{W} image")
    out = []
    for n, pts in enumerate(points):
        parts = []
        for x, y in pts:
            i = min(max(int(round(y)) - crop // 2, 0), H - crop)
            j = min(max(int(round(x)) - crop // 2, 0), W - crop)
            parts.append(images_NCHW[n, :, i : i + crop, j : j + crop].reshape(-1))
        out.append(torch.cat(parts))
    return torch.stack(out)


def _fit(X_NF: torch.Tensor, y_N: torch.Tensor, k: int, l2: float, iters: int) -> torch.Tensor:
    """Multinomial logistic regression by L-BFGS; returns weights ``(F + 1, K)`` (bias last)."""
    Xb = torch.cat([X_NF, torch.ones(len(X_NF), 1, dtype=X_NF.dtype)], dim=1)
    W = torch.zeros(Xb.shape[1], k, dtype=X_NF.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([W], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(Xb @ W, y_N) + l2 * W[:-1].pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach()


def _predict(W: torch.Tensor, X_NF: torch.Tensor) -> torch.Tensor:
    return (torch.cat([X_NF, torch.ones(len(X_NF), 1, dtype=X_NF.dtype)], dim=1) @ W).argmax(1)


def linear_probe(
    X_train: torch.Tensor,
    y_train: torch.Tensor,
    X_eval: torch.Tensor,
    y_eval: torch.Tensor,
    iters: int = 200,
) -> dict:
    """Held-out accuracy of a standardised logistic probe (L2 from :data:`L2_GRID`, picked on
    the last fifth of the training rows, then refitted on all of them)."""
    if len(X_train) < 10 or len(X_eval) == 0:
        raise UserError("a probe needs at least 10 training faces and 1 evaluation face")
    k = int(max(y_train.max(), y_eval.max())) + 1
    mu, sd = X_train.mean(0), X_train.std(0) + 1e-3
    Xt, Xe = ((X_train - mu) / sd).double(), ((X_eval - mu) / sd).double()
    cut = len(Xt) * 4 // 5
    scores = []
    for l2 in L2_GRID:
        W = _fit(Xt[:cut], y_train[:cut], k, l2, iters)
        scores.append(((_predict(W, Xt[cut:]) == y_train[cut:]).double().mean().item(), -l2))
    l2 = -max(scores)[1]
    W = _fit(Xt, y_train, k, l2, iters)
    return {"accuracy": (_predict(W, Xe) == y_eval).double().mean().item(), "l2": l2}


def _faces(records: Sequence[dict], size: int) -> tuple[torch.Tensor, list, list]:
    """Images in ``[-1, 1]``, landmarks and (labels, hidden) of the records with landmarks."""
    from ..data.shards import labels_of

    images, marks, labels = [], [], []
    for rec in records:
        lm = record_landmarks(rec.get("attributes"), rec.get("identity"), size)
        if lm is None:
            continue
        images.append(png_to_tensor(rec["image"], size))  # as the tokenizer trained on them
        marks.append(lm)
        labels.append((labels_of(rec), set(rec.get("hidden") or [])))
    if not images:
        raise UserError("no FaceForge faces with landmarks to probe (imported photos have none)")
    return torch.stack(images), marks, labels


@torch.no_grad()
def _encode_decode(
    tok: LFQAutoencoder, images: torch.Tensor, batch: int, bf16: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    codes, recon = [], []
    for i in range(0, len(images), batch):
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            c = tok.encode(images[i : i + batch])
            codes.append(c)
            recon.append(tok.decode(c).float())
    return torch.cat(codes), torch.cat(recon)


def attribute_probes(
    tokenizer: LFQAutoencoder,
    train_records: Sequence[dict],
    eval_records: Sequence[dict],
    attributes: Sequence[str] = tuple(PROBED),
    window: int = 3,
    crop: int | None = None,
    batch_size: int = 32,
    bf16: bool = False,
) -> dict:
    """Probe accuracies per attribute (see the module docstring).

    Records: FaceForge shard rows with ``image``, ``attributes``, ``identity``, ``hidden``.
    A face enters an attribute's probe only where the attribute is visible (not ``hidden``);
    an attribute too few faces show is reported as ``{"skipped": reason}``.
    ``crop`` defaults to two code cells (16 px at f = 8).
    """
    unknown = sorted(set(attributes) - set(PROBED))
    if unknown:
        raise UserError(f"cannot probe {unknown}; probed attributes: {sorted(PROBED)}")
    size, f = tokenizer.config.resolution, tokenizer.config.downsample
    crop = crop or 2 * f
    tokenizer.eval()
    sets = {}
    for name, recs in (("train", train_records), ("eval", eval_records)):
        images, marks, labels = _faces(recs, size)
        codes, recon = _encode_decode(tokenizer, images, batch_size, bf16)
        bits = codes_to_bits(codes, tokenizer.config.codebook_bits)
        sets[name] = (images, recon, bits, marks, labels)
    out: dict = {"window": window, "crop": crop}
    for attr in attributes:
        keys = PROBED[attr]
        feats, ys = {}, {}
        for name, (images, recon, bits, marks, labels) in sets.items():
            rows = [n for n, (lab, hid) in enumerate(labels) if attr not in hid and attr in lab]
            pts = [[marks[n][k][:2] for k in keys] for n in rows]
            feats[name] = {
                "codes": cell_block(bits[rows], pts, f, window),
                "pixels": pixel_patch(images[rows], pts, crop),
                "reconstruction": pixel_patch(recon[rows], pts, crop),
            }
            ys[name] = [str(labels[n][0][attr]) for n in rows]
        if len(ys["train"]) < 10 or not ys["eval"]:  # e.g. eye colour with every eye closed
            out[attr] = {"skipped": f"{len(ys['train'])} train / {len(ys['eval'])} eval faces "
                         "show it (a probe needs >= 10 / >= 1)"}  # fmt: skip
            continue
        classes = sorted(set(ys["train"]) | set(ys["eval"]))
        y = {s: torch.tensor([classes.index(v) for v in ys[s]]) for s in ys}
        majority = max(ys["eval"].count(c) for c in classes) / max(len(ys["eval"]), 1)
        res = {"classes": classes, "n_train": len(ys["train"]), "n_eval": len(ys["eval"])}
        res["majority"] = majority
        for fs in FEATURE_SETS:
            res[fs] = linear_probe(feats["train"][fs], y["train"], feats["eval"][fs], y["eval"])[
                "accuracy"
            ]
        out[attr] = res
    return out
