"""Training loop of the LFQ image tokenizer, with exact resume.

Loss (MAGVIT-v2, Yu et al. 2023, Sec. 3.1 and Appendix; adversarial and perceptual terms
omitted, see README): ``l1·|x - x̂| + l2·(x - x̂)^2 + entropy_weight·(E[H] - γ H(E))
+ commitment_weight·‖z - sg(q)‖²``, plus ``attr_weight·CE`` of the attribute heads on the
codes when asked (:mod:`.code_heads`).

Resume: every checkpoint folder ``OUT/checkpoint`` holds the model and AdamW state
(safetensors), the torch RNG state, the data-stream position and the step (``state.json``);
it is written to a temporary folder and swapped in by renames, so a kill at any moment
leaves a complete checkpoint. The learning rate is a pure function of the step (linear
warm-up, cosine decay), so no scheduler object needs saving. Resuming from step k and
training to N gives the same parameters as training to N in one go.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..atomic import write_text_atomic
from ..errors import UserError
from .autoencoder import LFQAutoencoder, TokenizerConfig, grow_codebook
from .code_heads import HEADS_FILE, CodeAttributeHeads
from .images import ImageStream, save_grid
from .regions import region_map, region_weights

CKPT = "checkpoint"
HEADS_LR_MULT = 10.0


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of the tokenizer training run (saved in ``state.json``)."""

    steps: int = 20_000
    batch_size: int = 16
    lr: float = 2e-4
    warmup_steps: int = 500
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    detail_weight: float = 0.0  # λ of :func:`detail_map`; 0 = plain pixel losses
    region_weight: float = 0.0  # strength of :func:`regions.region_weights`; 0 = none
    attr_weight: float = 0.0  # weight of the code heads' cross-entropy (code_heads); 0 = off
    bf16: bool = True
    seed: int = 0
    log_every: int = 10
    sample_every: int = 500
    ckpt_every: int = 250


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate at optimizer step ``step`` (0-based): linear warm-up then cosine decay."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cos)


_LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def detail_map(images_BCHW: torch.Tensor, strength: float) -> torch.Tensor:
    """Per-pixel loss weights ``(B, 1, H, W)`` = 1 + strength · edge energy / its image mean.

    Edge energy: |Laplacian| of the grey image, spread to a 5x5 neighbourhood. FaceForge faces
    are mostly flat regions; their small high-contrast parts (eyes, mouth, earrings, glasses,
    moles) carry the fine attributes but a negligible share of a plain pixel loss.
    """
    g = images_BCHW.float().mean(1, keepdim=True)
    e = F.conv2d(g, _LAPLACE.to(g.device)[None, None], padding=1).abs()
    e = F.max_pool2d(e, 5, stride=1, padding=2)
    return 1.0 + strength * e / e.mean((2, 3), keepdim=True).clamp_min(1e-6)


def pixel_losses(
    recon_BCHW: torch.Tensor,
    images_BCHW: torch.Tensor,
    detail_weight: float,
    region_weights_B1HW: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 and L2 reconstruction errors (fp32), weighted per pixel by :func:`detail_map`
    (if λ > 0) times ``region_weights_B1HW`` (:func:`regions.region_weights`, if given);
    normalised by the mean weight, so uniform weights give the plain losses."""
    diff = recon_BCHW.float() - images_BCHW
    w = detail_map(images_BCHW, detail_weight) if detail_weight > 0 else None
    if region_weights_B1HW is not None:
        w = region_weights_B1HW if w is None else w * region_weights_B1HW
    if w is not None:
        return (w * diff.abs()).mean() / w.mean(), (w * diff.pow(2)).mean() / w.mean()
    return diff.abs().mean(), diff.pow(2).mean()


def tokenizer_loss(
    model: LFQAutoencoder,
    images_BCHW: torch.Tensor,
    cfg: TrainConfig,
    landmarks: list | None = None,
    labels: list | None = None,
    heads: CodeAttributeHeads | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total training loss and its parts (floats, for logging).

    ``landmarks``: per image (or ``None``), used when ``cfg.region_weight`` > 0;
    ``labels`` (per image ``(values, hidden)`` or ``None``) and ``heads``: the attribute term,
    used when ``cfg.attr_weight`` > 0."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
        out = model(images_BCHW)
    rw = None
    if cfg.region_weight > 0 and landmarks is not None:
        rw = region_weights(region_map(landmarks, images_BCHW.shape[-1]), cfg.region_weight)
    l1, l2 = pixel_losses(out.recon_BCHW, images_BCHW, cfg.detail_weight, rw)
    q = model.quantizer
    loss = (
        cfg.l1_weight * l1
        + cfg.l2_weight * l2
        + q.entropy_weight * out.lfq.entropy_loss
        + q.commitment_weight * out.lfq.commit_loss
    )
    attr_metrics: dict[str, torch.Tensor] = {}
    if cfg.attr_weight > 0:
        if heads is None or landmarks is None or labels is None:
            raise ValueError("attr_weight > 0 needs the code heads, landmarks and labels")
        attr, attr_metrics = heads(out.lfq.quantized_BDHW, landmarks, labels)
        loss = loss + cfg.attr_weight * attr
        attr_metrics = {"attr": attr, **attr_metrics}
    named = {
        "loss": loss,
        "l1": l1,
        "l2": l2,
        "entropy": out.lfq.entropy_loss,
        "commit": out.lfq.commit_loss,
        "sample_entropy": out.lfq.per_sample_entropy,
        "codebook_entropy": out.lfq.codebook_entropy,
        **attr_metrics,
    }
    parts = {k: float(v.detach()) for k, v in named.items()}
    return loss, parts


def make_optimizer(
    model: torch.nn.Module, cfg: TrainConfig, heads: torch.nn.Module | None = None
) -> torch.optim.AdamW:
    """AdamW over the autoencoder and, in a second group at ``HEADS_LR_MULT`` times its
    learning rate, the code heads (they start from scratch, often beside a fine-tune's small
    learning rate, and must keep up with the codes they read)."""
    groups = [{"params": list(model.parameters())}]
    if heads is not None:
        groups.append({"params": list(heads.parameters()), "lr_mult": HEADS_LR_MULT})
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay
    )


# --- checkpoints ---------------------------------------------------------------------------
def save_checkpoint(
    out: Path,
    model: LFQAutoencoder,
    opt: torch.optim.Optimizer,
    step: int,
    stream: ImageStream,
    cfg: TrainConfig,
    extra: dict[str, torch.nn.Module] | None = None,
) -> None:
    """Write ``out/checkpoint`` atomically (temp folder + renames).

    ``extra``: further trained modules (e.g. a discriminator), saved as ``NAME.safetensors``.
    """
    tmp, final, old = out / f"{CKPT}.tmp", out / CKPT, out / f"{CKPT}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for name, module in (extra or {}).items():
        state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
        save_file(state, str(tmp / f"{name}.safetensors"))
    sd = opt.state_dict()
    tensors = {"rng.torch": torch.get_rng_state()}
    for pid, st in sd["state"].items():
        for name, value in st.items():
            tensors[f"opt.{pid}.{name}"] = torch.as_tensor(value).detach().clone().contiguous()
    save_file(tensors, str(tmp / "trainer.safetensors"))
    state = {
        "step": step,
        "data": stream.state_dict(),
        "train_config": asdict(cfg),
        "param_groups": sd["param_groups"],
    }
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def record_init(out: Path, init: str | Path, stage: str | None = None, grow_bits: int = 0) -> None:
    """Write ``out/init.json``: the tokenizer a fine-tune started from and, when that is a
    run's ``tokenizer/`` folder, the steps and wall time of that run (for the model card).

    ``stage="decoder"`` marks a stage-2 run (the decoder alone); the ``## Training`` section
    of ``init``'s own model card, when it has one (a shipped tokenizer), is kept with it, so
    the new card can say how the codes it inherits were trained. ``grow_bits`` records a
    codebook grown from ``init``'s (its codes are then new ones)."""
    from .export import run_summary, training_section

    info = {"init": str(init), **run_summary(Path(init).parent)}
    if stage is not None:
        info["stage"] = stage
        info["init_training"] = training_section(Path(init))
    if grow_bits:
        info["grow_bits"] = grow_bits
    tmp = out / "init.json.tmp"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(out / "init.json")


def find_checkpoint(out: Path) -> Path | None:
    """The complete checkpoint folder in ``out`` (``checkpoint``, else ``checkpoint.old``)."""
    for name in (CKPT, f"{CKPT}.old"):
        if (out / name / "state.json").is_file():
            return out / name
    return None


def load_checkpoint(
    ckpt: Path,
    model: LFQAutoencoder,
    opt: torch.optim.Optimizer,
    stream: ImageStream,
    extra: dict[str, torch.nn.Module] | None = None,
) -> int:
    """Restore model, optimizer, RNG and data position; returns the step to continue from."""
    state = json.loads((ckpt / "state.json").read_text())
    model.load_state_dict(load_file(str(ckpt / "model.safetensors")))
    for name, module in (extra or {}).items():
        module.load_state_dict(load_file(str(ckpt / f"{name}.safetensors")))
    tensors = load_file(str(ckpt / "trainer.safetensors"))
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = value
    opt.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    stream.load_state_dict(state["data"])
    return int(state["step"])


def _resumed_config(
    ckpt: Path, model_cfg: TokenizerConfig, cfg: TrainConfig, log: Callable[[str], None]
) -> TokenizerConfig:
    """The checkpoint's tokenizer config; logs where it or the settings differ from the run's."""
    saved = TokenizerConfig.from_dict(json.loads((ckpt / "config.json").read_text()))
    if saved != model_cfg:
        log(f"note: {ckpt} holds a tokenizer of another shape; continuing with its config")
    changed = _changed_settings(ckpt, cfg)
    if changed:
        log(f"note: training settings differ from the checkpoint's: {changed}")
    return saved


def _changed_settings(ckpt: Path, cfg: TrainConfig) -> dict:
    """Settings of ``cfg`` that differ from those saved in ``ckpt`` (name -> (old, new))."""
    saved = json.loads((ckpt / "state.json").read_text()).get("train_config", {})
    return {k: (saved[k], v) for k, v in asdict(cfg).items() if k in saved and saved[k] != v}


def _trim_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after ``step`` (they will be recomputed by the resumed run)."""
    if path.is_file():
        keep = [
            ln
            for ln in path.read_text().splitlines()
            if ln.strip() and json.loads(ln).get("step", 0) <= step
        ]
        write_text_atomic(path, "".join(ln + "\n" for ln in keep))


def _fmt_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


# --- the loop ------------------------------------------------------------------------------
def train_tokenizer(
    model_cfg: TokenizerConfig,
    cfg: TrainConfig,
    train_shards: Sequence[str | Path],
    out_dir: str | Path,
    sample_images_BCHW: torch.Tensor | None = None,
    stop_after: int | None = None,
    log: Callable[[str], None] = print,
    init: str | Path | None = None,
    grow_bits: int = 0,
) -> LFQAutoencoder:
    """Train (or resume training of) an LFQ tokenizer; returns the model.

    Args:
        model_cfg: tokenizer shape (ignored when resuming: the checkpoint's config is used).
        cfg: optimisation settings.
        train_shards: parquet shard files of the training split.
        out_dir: run folder: ``checkpoint/``, ``tokenizer/`` (latest weights for consumers),
            ``metrics.jsonl``, ``samples/step-XXXXXXX.png`` (originals over reconstructions).
        sample_images_BCHW: fixed images for the reconstruction grids (default: first batch).
        stop_after: stop (after checkpointing) once this step is reached, as if killed.
        init: a tokenizer folder to start from (fine-tuning; its config replaces
            ``model_cfg``); ignored when resuming, since the checkpoint holds the weights.
        grow_bits: with ``init``, add this many code bits to its codebook first
            (:func:`~unif2ace.tokenizer.autoencoder.grow_codebook`); 0 = keep its codebook.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = find_checkpoint(out)
    start = None
    if ckpt is not None:
        model_cfg = _resumed_config(ckpt, model_cfg, cfg, log)
    elif init is not None:
        start = LFQAutoencoder.from_pretrained(init)
        if grow_bits:
            start = grow_codebook(start, grow_bits, seed=cfg.seed)
        model_cfg = start.config
        record_init(out, init, grow_bits=grow_bits)
        log(f"starting from the weights of {init}")
        if grow_bits:
            bits = f"{grow_bits} bit{'s' * (grow_bits > 1)}"
            log(f"codebook grown by {bits} to {model_cfg.codebook_size} codes")
    elif grow_bits:
        raise UserError("--grow-bits needs --init: it grows a trained tokenizer's codebook")
    torch.manual_seed(cfg.seed)
    # channels_last: oneDNN's convolutions run a small-preset step (batch 16, 128 px, bf16)
    # 1.16x faster on these CPUs (benchmarks/bench_tokenizer_layout.py; the 32-px tiny preset
    # is 3x slower, but it trains for seconds). Weights are saved contiguous.
    model = LFQAutoencoder(model_cfg)
    if start is not None:
        model.load_state_dict({k: v.float() for k, v in start.state_dict().items()})
    model = model.to(memory_format=torch.channels_last)
    heads, extra = None, None
    if cfg.attr_weight > 0:
        heads = CodeAttributeHeads(model_cfg.codebook_bits, model_cfg.downsample)
        extra = {HEADS_FILE: heads}
    if ckpt is not None and (heads is not None) != (ckpt / f"{HEADS_FILE}.safetensors").is_file():
        raise UserError(
            f"{ckpt} was trained {'without' if heads is not None else 'with'} --attr-weight; "
            "resume it with the same setting, or start a new --out"
        )
    opt = make_optimizer(model, cfg, heads)
    labelled = cfg.region_weight > 0 or heads is not None
    stream = ImageStream(
        train_shards, model_cfg.resolution, cfg.batch_size, seed=cfg.seed, landmarks=labelled
    )
    step = load_checkpoint(ckpt, model, opt, stream, extra) if ckpt is not None else 0
    if ckpt is not None:
        log(f"resuming from {ckpt} at step {step}")
    _trim_metrics(out / "metrics.jsonl", step)
    if sample_images_BCHW is None:
        sample_images_BCHW = ImageStream(
            train_shards, model_cfg.resolution, 8, shuffle=False
        ).next_batch()
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    t0, start_step = time.time(), step
    model.train()
    while step < end:
        if labelled:
            images, marks, labels = stream.next_batch_labelled()
        else:
            images, marks, labels = stream.next_batch(), None, None
        images = images.contiguous(memory_format=torch.channels_last)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg) * group.get("lr_mult", 1.0)
        loss, parts = tokenizer_loss(model, images, cfg, marks, labels, heads)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        # the heads are clipped apart: their gradient must not shrink the autoencoder's
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if heads is not None:
            torch.nn.utils.clip_grad_norm_(heads.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        if step % cfg.log_every == 0 or step == end:
            parts["grad_norm"] = float(gnorm)
            shown = ("loss", "l1", "entropy") + (("attr",) if "attr" in parts else ())
            _log_step(out, log, step, cfg, parts, t0, start_step, shown)
        if cfg.sample_every > 0 and (step % cfg.sample_every == 0 or step == cfg.steps):
            _write_samples(model, sample_images_BCHW, out / "samples" / f"step-{step:07d}.png")
        if step % cfg.ckpt_every == 0 or step == end:
            save_checkpoint(out, model, opt, step, stream, cfg, extra)
            model.save_pretrained(out / "tokenizer")
    model.eval()
    return model


def _log_step(
    out: Path,
    log: Callable[[str], None],
    step: int,
    cfg: TrainConfig,
    parts: dict[str, float],
    t0: float,
    start_step: int,
    shown: tuple[str, ...] = ("loss", "l1", "entropy"),
) -> None:
    """Append one line to ``metrics.jsonl`` and print ``shown`` parts, rate and ETA."""
    rate = (step - start_step) / max(time.time() - t0, 1e-9)
    eta = (cfg.steps - step) / max(rate, 1e-9)
    rec = {"step": step, "lr": lr_at(step - 1, cfg), **parts}
    rec |= {"img_per_s": rate * cfg.batch_size, "time": time.time()}
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")
    values = " ".join(f"{k} {parts[k]:.4f}" for k in shown)
    log(
        f"step {step}/{cfg.steps} {values} | {rate:.2f} step/s {rate * cfg.batch_size:.1f} "
        f"img/s | ETA {_fmt_eta(eta)}"
    )


@torch.no_grad()
def _write_samples(model: LFQAutoencoder, images_BCHW: torch.Tensor, path: Path) -> None:
    was_training = model.training
    model.eval()
    recon = model.decode(model.encode(images_BCHW))
    save_grid([images_BCHW, recon], path)
    model.train(was_training)


def check_data(shards: Sequence[Path], root: Path, split: str) -> None:
    if not shards:
        raise UserError(
            f"no shards in {root / split}; build the data set with "
            "`unif2ace data build --out DIR` first"
        )
