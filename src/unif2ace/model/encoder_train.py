"""Train the in-project CNN encoders of the sequence-level experts on FaceForge (NOTES.md §4).

Shape legend: B batch, C channels, H/W pixels, A attributes (46), O head outputs,
P identity parameters (26), N records.

The paper plugs pretrained, frozen encoders into its sequence-level experts: a CLIP-style
semantic encoder and a face-identity encoder. Without downloads, the defaults are the small
:class:`~unif2ace.model.encoders.CNNEncoder` trained here:

* ``semantic``: one head over all 46 ontology attributes: a logit per binary attribute (BCE)
  and a logit block per categorical attribute (cross-entropy over its values). Hidden and
  not-applicable attributes (:func:`~unif2ace.data.ontology.hidden_attributes` plus the
  record's ``hidden`` column) carry target -1 and are masked out of the loss.
* ``identity``: a head regressing the 26 ``id_*`` identity parameters (MSE); the ``scene_*``
  parameters (pose jitter, light, background) are not targets, so the features are pushed to
  encode who the person is rather than how the photo was taken.

A trained encoder is a folder ``model.safetensors`` + ``config.json`` (never pickle);
:func:`load_trained_encoder` reads it back frozen, ``build_encoder("cnn-semantic", F,
path=DIR)`` goes through it, and :func:`attach_trained_encoders` puts trained encoders into a
built :class:`~unif2ace.model.transformer.UnifiedTransformer`. Inputs follow the model's
encoder convention: RGB in [0, 1], bicubic-resized to ``size`` (``data.encoder_resolution``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..atomic import atomic_path, write_json_atomic
from ..errors import UserError
from .encoder_data import (  # noqa: F401  (re-exported: the judge and tests import them here)
    KINDS,
    _check_kind,
    attribute_layout,
    batch_indices,
    identity_loss,
    identity_targets,
    load_split,
    semantic_loss,
    semantic_targets,
    to_unit,
)
from .encoders import CNNEncoder

WEIGHTS, CONFIG, STATE, METRICS = "model.safetensors", "config.json", "state.json", "metrics.json"
FORMAT = "unif2ace-encoder/1"


# ------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class EncoderTrainConfig:
    """Hyper-parameters of one encoder training run.

    Attributes:
        kind: ``semantic`` or ``identity``.
        steps / batch_size / size: optimizer steps, faces per step, input pixels.
        feature_dim / width: CNNEncoder shape (must match the model config's
            ``*_feature_dim`` / ``encoder_width``; 128 / 32 is the ``small`` preset).
        lr / weight_decay / warmup: AdamW with linear warmup then cosine decay to 10 %.
        seed: weight init and batch order.
        log_every / ckpt_every: progress lines and resumable checkpoints (0: never).
        bf16: bf16 autocast for the forward pass (loss in fp32).
        eval_every: validation loss every this many steps; the weights with the lowest one
            are kept (early stopping against over-fitting). 0: keep the last weights.
    """

    kind: str = "semantic"
    steps: int = 2000
    batch_size: int = 64
    size: int = 64
    feature_dim: int = 128
    width: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 100
    seed: int = 0
    log_every: int = 50
    ckpt_every: int = 500
    bf16: bool = True
    eval_every: int = 0


def n_outputs(kind: str) -> int:
    """Head size: 90 attribute logits (semantic) or 26 identity parameters."""
    from ..data.faceforge.identity import IDENTITY_KEYS

    _check_kind(kind)
    if kind == "semantic":
        _, start, n = attribute_layout()[-1]
        return start + n
    return len(IDENTITY_KEYS)


class ProbedEncoder(nn.Module):
    """A :class:`CNNEncoder` plus a linear probe over all its feature tokens, flattened.

    The probe sees the global token and the 4x4 grid, so positions survive: geometric identity
    parameters (eye spacing, jaw width) and layout attributes (head turn, hair length) are lost
    in the global token alone, a mean over positions. Only ``encoder`` goes into the model.
    """

    def __init__(self, feature_dim: int, width: int, n_outputs: int):
        super().__init__()
        self.encoder = CNNEncoder(feature_dim, width)
        with torch.no_grad():
            n_tokens = self.encoder.features(torch.zeros(1, 3, 32, 32)).shape[1]
        self.probe = nn.Linear(n_tokens * feature_dim, n_outputs)

    def forward(self, images_BCHW: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> head outputs_BO."""
        return self.probe(self.encoder.features(images_BCHW).flatten(1))


def lr_at(step: int, cfg: EncoderTrainConfig) -> float:
    """Linear warmup, then cosine decay to 10 % of ``cfg.lr``."""
    warmup = min(cfg.warmup, max(cfg.steps // 10, 1))  # short runs (tests) warm up briefly
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    frac = (step - warmup) / max(cfg.steps - warmup, 1)
    return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(frac, 1.0))))


def kind_loss(kind: str, out_BO: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return semantic_loss(out_BO, targets) if kind == "semantic" else identity_loss(out_BO, targets)


# ------------------------------------------------------------------------ checkpointing
def _optim_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"optim.{i}.{k}"] = torch.as_tensor(v).clone()
    return out


def save_train_state(folder: Path, enc: ProbedEncoder, opt, step: int, cfg, best: dict) -> None:
    """Resumable state: ``ckpt.safetensors`` (weights, AdamW moments, best weights so far)
    then ``state.json``; written last, so a run killed mid-save resumes from the previous one.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().clone() for k, v in enc.state_dict().items()}
    tensors.update(_optim_tensors(opt))
    tensors.update({f"best.{k}": v.clone() for k, v in (best["state"] or {}).items()})
    name = f"ckpt-{step:08d}.safetensors"
    with atomic_path(folder / name) as tmp:
        save_file(tensors, str(tmp))
    old = _read_state(folder)
    info = {"loss": best["loss"], "step": best["step"]}
    state = {"step": step, "file": name, "config": asdict(cfg), "best": info}
    write_json_atomic(folder / STATE, state)
    if old and old["file"] != name:
        (folder / old["file"]).unlink(missing_ok=True)


def _read_state(folder: Path) -> dict | None:
    path = folder / STATE
    return json.loads(path.read_text()) if path.is_file() else None


def new_best() -> dict:
    """Best-validation tracker: ``{"loss", "step", "state"}`` (state: a weight copy)."""
    return {"loss": math.inf, "step": 0, "state": None}


def load_train_state(folder: Path, enc: ProbedEncoder, opt, cfg) -> tuple[int, dict]:
    """Restore weights and AdamW state from ``folder``: (step to continue at, best tracker)."""
    state = _read_state(folder)
    if state is None:
        return 0, new_best()
    skip = ("log_every", "ckpt_every")
    saved = {k: v for k, v in state["config"].items() if k not in skip}
    now = {k: v for k, v in asdict(cfg).items() if k not in skip}
    if saved != now:
        raise UserError(
            f"{folder} holds a run with another config ({saved}); use a new --out or delete it"
        )
    t = load_file(str(folder / state["file"]))
    enc.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    osd = opt.state_dict()
    for key, v in t.items():
        if key.startswith("optim."):
            _, i, name = key.split(".", 2)
            osd["state"].setdefault(int(i), {})[name] = v
    opt.load_state_dict(osd)
    best = {**new_best(), **state.get("best", {})}
    kept = {k[5:]: v for k, v in t.items() if k.startswith("best.")}
    best["state"] = kept or None
    return int(state["step"]), best


def save_trained_encoder(enc: ProbedEncoder, folder: str | Path, meta: dict) -> None:
    """Write ``model.safetensors`` and ``config.json`` into ``folder``.

    Tensor names: the CNNEncoder's own (``body.*``, ``proj.*``) plus ``probe.*``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = enc.encoder.state_dict()
    state.update({f"probe.{k}": v for k, v in enc.probe.state_dict().items()})
    tensors = {k: v.detach().contiguous().clone() for k, v in state.items()}
    cfg = {
        "format": FORMAT,
        "feature_dim": enc.encoder.feature_dim,
        "width": enc.encoder.body[0].out_channels,
        "n_outputs": enc.probe.out_features,
        **meta,
    }
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(tensors, str(tmp))
    write_json_atomic(folder / CONFIG, cfg)


def read_encoder_config(path: str | Path) -> dict:
    """The ``config.json`` of a trained encoder folder (UserError when it is not one)."""
    folder = Path(path)
    cfg_path = folder / CONFIG
    if not cfg_path.is_file() or not (folder / WEIGHTS).is_file():
        raise UserError(
            f"{str(folder)!r} is not a trained encoder folder (needs {CONFIG} and {WEIGHTS}); "
            "train one with `unif2ace train encoders --data DIR --out DIR`"
        )
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("format") != FORMAT:
        raise UserError(f"{cfg_path} has format {cfg.get('format')!r}, expected {FORMAT!r}")
    return cfg


def load_trained_encoder(path: str | Path, feature_dim: int | None = None) -> CNNEncoder:
    """A trained CNNEncoder from its folder, frozen (``requires_grad=False``, eval mode).

    Args:
        path: folder written by :func:`save_trained_encoder`.
        feature_dim: expected feature width (UserError on mismatch); None accepts any.
    """
    cfg = read_encoder_config(path)
    if feature_dim is not None and cfg["feature_dim"] != feature_dim:
        raise UserError(
            f"encoder at {str(path)!r} gives {cfg['feature_dim']}-dim features but "
            f"{feature_dim} are expected; retrain with --feature-dim {feature_dim} or set the "
            f"model config's feature dim to {cfg['feature_dim']}"
        )
    enc = CNNEncoder(cfg["feature_dim"], cfg["width"])
    state = load_file(str(Path(path) / WEIGHTS))
    enc.load_state_dict({k: v for k, v in state.items() if not k.startswith("probe.")})
    return enc.eval().requires_grad_(False)


def load_probed_encoder(path: str | Path) -> ProbedEncoder:
    """The trained encoder with its attribute / identity probe (for evaluation), frozen."""
    cfg = read_encoder_config(path)
    enc = ProbedEncoder(cfg["feature_dim"], cfg["width"], cfg["n_outputs"])
    state = load_file(str(Path(path) / WEIGHTS))
    enc.encoder.load_state_dict({k: v for k, v in state.items() if not k.startswith("probe.")})
    enc.probe.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("probe.")})
    return enc.eval().requires_grad_(False)


def attach_trained_encoders(model, semantic: str | None = None, face: str | None = None):
    """Load trained, frozen encoders into ``model.encoders`` ("semantic" / "face").

    The trained encoder must have the model config's feature dim and ``encoder_width``, so
    the model's state dict keeps its shapes (checkpoints still load into a fresh build).
    Returns ``model``.
    """
    cfg = model.cfg
    for slot, path, dim in (
        ("semantic", semantic, cfg.semantic_feature_dim),
        ("face", face, cfg.face_feature_dim),
    ):
        if path is None:
            continue
        if slot not in model.encoders:
            raise UserError("this model has no sequence-level MoE (seq_moe=False): no encoders")
        width = read_encoder_config(path)["width"]
        if width != cfg.encoder_width:
            raise UserError(
                f"encoder at {str(path)!r} has width {width} but the model config has "
                f"encoder_width={cfg.encoder_width}; set encoder_width={width} or retrain"
            )
        ref = next(model.encoders[slot].parameters())
        enc = load_trained_encoder(path, dim).to(device=ref.device, dtype=ref.dtype)
        model.encoders[slot] = enc
    return model


# ----------------------------------------------------------------------------- evaluate
@torch.no_grad()
def predict(enc: ProbedEncoder, images_NCHW: torch.Tensor, batch_size: int = 256, bf16=True):
    """Head outputs ``(N, O)`` in fp32 for uint8 images."""
    outs = []
    for i in range(0, len(images_NCHW), batch_size):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outs.append(enc(to_unit(images_NCHW[i : i + batch_size])).float())
    return torch.cat(outs)


def semantic_metrics(logits_NO: torch.Tensor, targets_NA: torch.Tensor, train_NA=None) -> dict:
    """Accuracy per attribute on visible faces: mean, worst 5, and (with the training
    targets) the majority-class baseline of each attribute for comparison."""
    acc, base = {}, {}
    for a, (name, start, n) in enumerate(attribute_layout()):
        t = targets_NA[:, a]
        vis = t >= 0
        if not vis.any():
            continue
        x = logits_NO[vis, start : start + n]
        pred = (x[:, 0] > 0).long() if n == 1 else x.argmax(-1)
        acc[name] = float((pred == t[vis]).float().mean())
        if train_NA is not None:
            tt = train_NA[:, a]
            major = torch.bincount(tt[tt >= 0], minlength=max(n, 2)).argmax()
            base[name] = float((t[vis] == major).float().mean())
    worst = sorted(acc.items(), key=lambda kv: kv[1])[:5]
    out = {"mean_accuracy": float(np.mean(list(acc.values()))), "worst5": dict(worst)}
    if base:
        out["majority_baseline_mean"] = float(np.mean(list(base.values())))
        out["majority_baseline"] = base
    out["per_attribute"] = acc
    return out


def identity_metrics(pred_NP: torch.Tensor, targets_NP: torch.Tensor) -> dict:
    """R² of the identity regression: per parameter, their mean, and pooled over all."""
    from ..data.faceforge.identity import IDENTITY_KEYS

    sse = ((pred_NP - targets_NP) ** 2).sum(0)
    sst = ((targets_NP - targets_NP.mean(0)) ** 2).sum(0)
    r2 = torch.where(sst > 0, 1 - sse / sst.clamp_min(1e-12), torch.nan)  # nan: constant target
    return {
        "r2_mean": float(r2.nanmean()),
        "r2_pooled": float(1 - sse.sum() / sst.sum()),
        "mse": float(((pred_NP - targets_NP) ** 2).mean()),
        "per_parameter": {k: float(v) for k, v in zip(IDENTITY_KEYS, r2.tolist(), strict=True)},
    }


# -------------------------------------------------------------------------------- train
def train_encoder(
    data_dir: str | Path, out_dir: str | Path, cfg: EncoderTrainConfig, eval_split="test"
) -> dict:
    """Train one encoder, save it to ``out_dir`` and return its metrics on ``eval_split``.

    Resumes from ``out_dir/ckpt`` when it holds a run with the same config.
    """
    _check_kind(cfg.kind)
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    images, targets = load_split(data_dir, "train", cfg.kind, cfg.size)
    print(f"[{cfg.kind}] {len(images)} train faces loaded in {time.perf_counter() - t0:.1f}s")
    torch.manual_seed(cfg.seed)
    enc = ProbedEncoder(cfg.feature_dim, cfg.width, n_outputs(cfg.kind))
    opt = torch.optim.AdamW(enc.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, best = load_train_state(out_dir / "ckpt", enc, opt, cfg)
    if start:
        print(f"[{cfg.kind}] resuming at step {start}")
    val = load_split(data_dir, "val", cfg.kind, cfg.size) if cfg.eval_every else None
    t_train = _train_steps(enc, opt, (images, targets), cfg, start, out_dir, val, best)
    if best["state"] is not None:
        enc.load_state_dict(best["state"])
        print(f"[{cfg.kind}] kept step {best['step']} (val loss {best['loss']:.4f})")
    test_x, test_t = load_split(data_dir, eval_split, cfg.kind, cfg.size)
    enc.eval()
    out = predict(enc, test_x, bf16=cfg.bf16)
    if cfg.kind == "semantic":
        metrics = semantic_metrics(out, test_t, targets)
    else:
        metrics = identity_metrics(out, test_t)
    metrics.update(
        split=eval_split, n_eval=len(test_x), train_seconds=t_train, steps=cfg.steps, start=start
    )
    if best["state"] is not None:
        metrics.update(best_step=best["step"], best_val_loss=best["loss"])
    meta = {"kind": cfg.kind, "size": cfg.size, "train": asdict(cfg), "data": str(data_dir)}
    if cfg.kind == "semantic":
        meta["outputs"] = [list(x) for x in attribute_layout()]
    save_trained_encoder(enc, out_dir, meta)
    write_json_atomic(out_dir / METRICS, metrics)
    return metrics


def _validate(enc, val, cfg: EncoderTrainConfig, best: dict, done: int) -> None:
    """Validation loss; a new minimum stores a copy of the weights in ``best``."""
    enc.eval()
    loss = float(kind_loss(cfg.kind, predict(enc, val[0], bf16=cfg.bf16), val[1]))
    enc.train()
    if loss < best["loss"]:
        state = {k: v.detach().clone() for k, v in enc.state_dict().items()}
        best.update(loss=loss, step=done, state=state)
    print(f"[{cfg.kind}] step {done} val loss {loss:.4f} (best {best['loss']:.4f})", flush=True)


def _train_steps(enc, opt, data, cfg: EncoderTrainConfig, start: int, out_dir, val, best):
    """The loop: seeded batches, bf16 autocast forward, fp32 loss, AdamW; returns seconds.

    ``data``: (uint8 images, targets); ``val`` the same for validation, or None.
    """
    images, targets = data
    enc.train()
    t0, seen, logs = time.perf_counter(), 0, []
    for step in range(start, cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        idx = batch_indices(step, len(images), cfg.batch_size, cfg.seed)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            out = enc(to_unit(images[idx]))
        loss = kind_loss(cfg.kind, out, targets[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(idx)
        logs.append(float(loss.detach()))
        done = step + 1
        if cfg.log_every and (done % cfg.log_every == 0 or done == cfg.steps):
            dt = time.perf_counter() - t0
            eta = dt / (done - start) * (cfg.steps - done)
            print(
                f"[{cfg.kind}] step {done}/{cfg.steps} | loss {np.mean(logs):.4f} | "
                f"lr {lr_at(step, cfg):.2e} | {seen / dt:,.0f} img/s | "
                f"{dt:,.0f}s < {eta:,.0f}s",
                flush=True,
            )
            logs = []
        if val is not None and (done % cfg.eval_every == 0 or done == cfg.steps):
            _validate(enc, val, cfg, best, done)
        if cfg.ckpt_every and done % cfg.ckpt_every == 0 and done < cfg.steps:
            save_train_state(out_dir / "ckpt", enc, opt, done, cfg, best)
    return time.perf_counter() - t0


def train_semantic_encoder(
    data_dir: str | Path,
    out_dir: str | Path,
    steps: int = 2000,
    batch_size: int = 64,
    size: int = 64,
    seed: int = 0,
    **kwargs,
) -> dict:
    """Train the attribute-supervised semantic encoder; returns test metrics (see
    :func:`semantic_metrics`). ``kwargs``: other :class:`EncoderTrainConfig` fields."""
    cfg = EncoderTrainConfig("semantic", steps, batch_size, size, seed=seed, **kwargs)
    return train_encoder(data_dir, out_dir, cfg)


def train_identity_encoder(
    data_dir: str | Path,
    out_dir: str | Path,
    steps: int = 2000,
    batch_size: int = 64,
    size: int = 64,
    seed: int = 0,
    **kwargs,
) -> dict:
    """Train the identity-parameter regressor; returns test metrics (see
    :func:`identity_metrics`). ``kwargs``: other :class:`EncoderTrainConfig` fields."""
    cfg = EncoderTrainConfig("identity", steps, batch_size, size, seed=seed, **kwargs)
    return train_encoder(data_dir, out_dir, cfg)
