"""Stage 2 of the image tokenizer: fine-tune the decoder alone, adversarially.

Stage 1 (:mod:`.train_image`) trains encoder, quantiser and decoder with pixel losses; its
reconstructions are the conditional mean of an image given its codes, so texture the codes
only hint at (stubble, freckles, the iris colour of a 4-pixel eye) comes out smeared. Stage 2
freezes the encoder and quantiser — **the codes do not change**, so pre-tokenised data and
any model trained on them stay valid (:func:`.pretokenize.tokenizer_hash` hashes only the
encoding side) — and trains the decoder against a PatchGAN discriminator (Isola et al.,
2017) with hinge losses, plus a discriminator feature-matching term (Wang et al., 2018)
that acts as a perceptual loss learned in-project: no pretrained network is downloaded.

Decoder loss: ``l1·L1 + l2·L2 (edge- and region-weighted) + fm_weight·FM + adv_weight·(−D(x̂))``, the
adversarial and feature-matching terms switched on after ``disc_start`` steps (the
discriminator trains from step 0 so it is informative when they start). One AdamW holds
both networks as two parameter groups; each half-step gives gradients to one network only
(the other has none, so AdamW leaves it alone). Exact resume as in stage 1: decoder,
discriminator, optimizer, RNG and data position in one atomically written checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserError
from .autoencoder import LFQAutoencoder
from .images import ImageStream, save_grid
from .pretokenize import ENCODING_SIDE
from .regions import region_map, region_weights
from .train_image import (
    TrainConfig,
    _changed_settings,
    _log_step,
    _trim_metrics,
    find_checkpoint,
    load_checkpoint,
    lr_at,
    pixel_losses,
    record_init,
    save_checkpoint,
)

DISC = "discriminator"
SHOWN = ("l1", "fm", "g_adv", "d_real", "d_fake")  # parts printed in the progress line


@dataclass(frozen=True)
class DecoderTrainConfig(TrainConfig):
    """Stage-1 settings plus the adversarial ones (saved in the checkpoint's ``state.json``)."""

    adv_weight: float = 0.1
    fm_weight: float = 1.0
    disc_start: int = 500
    disc_channels: int = 32
    disc_layers: int = 3
    disc_beta1: float = 0.5
    disc_beta2: float = 0.9


class PatchDiscriminator(nn.Module):
    """PatchGAN: strided 4x4 convolutions to a map of real/fake logits, one per patch.

    ``layers`` stride-2 stages (channels ``c, 2c, 4c, …`` capped at ``8c``), a stride-1 stage
    and a 1-channel head; GroupNorm, so a sample's logits never depend on the rest of the
    batch. :meth:`forward` returns the intermediate features too (for feature matching).
    """

    def __init__(self, in_channels: int = 3, channels: int = 32, layers: int = 3) -> None:
        super().__init__()
        if layers < 1 or channels < 8:
            raise UserError("the discriminator needs disc_layers >= 1 and disc_channels >= 8")
        stages: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2))
        ]
        c = channels
        for i in range(1, layers + 1):
            c_out = channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            stages.append(
                nn.Sequential(
                    nn.Conv2d(c, c_out, 4, stride, 1, bias=False),
                    nn.GroupNorm(min(32, c_out // 4), c_out),
                    nn.LeakyReLU(0.2),
                )
            )
            c = c_out
        self.stages = nn.ModuleList(stages)
        self.head = nn.Conv2d(c, 1, 4, 1, 1)

    def forward(self, x_BCHW: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        for stage in self.stages:
            x_BCHW = stage(x_BCHW)
            feats.append(x_BCHW)
        return self.head(x_BCHW), feats


def feature_matching(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the L1 distance between discriminator features (real detached)."""
    terms = [(f.float() - r.detach().float()).abs().mean() for r, f in zip(real, fake, strict=True)]
    return torch.stack(terms).mean()


class _Trainable(nn.Module):
    """The stage-2 parameters: the tokenizer's decoder and the discriminator."""

    def __init__(self, tokenizer: LFQAutoencoder, disc: PatchDiscriminator) -> None:
        super().__init__()
        self.decoder = tokenizer.decoder
        self.disc = disc


def make_optimizer(trainable: _Trainable, cfg: DecoderTrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        [
            {"params": list(trainable.decoder.parameters()), "betas": (cfg.beta1, cfg.beta2)},
            {
                "params": list(trainable.disc.parameters()),
                "betas": (cfg.disc_beta1, cfg.disc_beta2),
            },
        ],
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
    )


def _freeze_encoding_side(tokenizer: LFQAutoencoder) -> None:
    for module in (tokenizer.encoder, tokenizer.quantizer):
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)


def decoder_step(
    tokenizer: LFQAutoencoder,
    disc: PatchDiscriminator,
    opt: torch.optim.AdamW,
    images_BCHW: torch.Tensor,
    step: int,
    cfg: DecoderTrainConfig,
    landmarks: list | None = None,
) -> dict[str, float]:
    """One decoder update then one discriminator update; returns the logged parts.

    With ``adv_weight`` and ``fm_weight`` both 0 (a pixel-loss-only decoder fine-tune) the
    discriminator is never run: it could not change the decoder's update.

    ``landmarks``: per image (or ``None``); with ``cfg.region_weight`` > 0 the pixel losses
    weigh the fine-attribute regions up, as in stage 1 (:func:`regions.region_weights`)."""
    uses_disc = cfg.adv_weight > 0 or cfg.fm_weight > 0
    adversarial = uses_disc and step >= cfg.disc_start
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
        z_q = tokenizer.quantizer(tokenizer.encoder(images_BCHW)).quantized_BDHW
    # decoder half-step (the discriminator gets no gradients)
    disc.requires_grad_(False)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
        recon = tokenizer.decoder(z_q.detach())
    rw = None
    if cfg.region_weight > 0 and landmarks is not None:
        rw = region_weights(region_map(landmarks, images_BCHW.shape[-1]), cfg.region_weight)
    l1, l2 = pixel_losses(recon, images_BCHW, cfg.detail_weight, rw)
    loss = cfg.l1_weight * l1 + cfg.l2_weight * l2
    g_adv = fm = torch.zeros(())
    if adversarial:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            fake_logits, fake_feats = disc(recon)
            with torch.no_grad():
                _, real_feats = disc(images_BCHW)
        g_adv = -fake_logits.float().mean()
        fm = feature_matching(real_feats, fake_feats)
        loss = loss + cfg.adv_weight * g_adv + cfg.fm_weight * fm
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(tokenizer.decoder.parameters(), cfg.grad_clip)
    opt.step()
    parts = {"loss": float(loss.detach()), "l1": float(l1.detach()), "l2": float(l2.detach())}
    parts |= {"g_adv": float(g_adv.detach()), "fm": float(fm.detach()), "grad_norm": float(gnorm)}
    if not uses_disc:
        return parts | {"d_real": 0.0, "d_fake": 0.0}
    # discriminator half-step (hinge loss; the decoder output is detached)
    disc.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
        real_logits, _ = disc(images_BCHW)
        fake_logits, _ = disc(recon.detach())
    d_real = F.relu(1.0 - real_logits.float()).mean()
    d_fake = F.relu(1.0 + fake_logits.float()).mean()
    opt.zero_grad(set_to_none=True)
    (d_real + d_fake).backward()
    torch.nn.utils.clip_grad_norm_(disc.parameters(), cfg.grad_clip)
    opt.step()
    return parts | {"d_real": float(d_real.detach()), "d_fake": float(d_fake.detach())}


def train_decoder(
    tokenizer_dir: str | Path,
    cfg: DecoderTrainConfig,
    train_shards: Sequence[str | Path],
    out_dir: str | Path,
    sample_images_BCHW: torch.Tensor | None = None,
    stop_after: int | None = None,
    log: Callable[[str], None] = print,
) -> LFQAutoencoder:
    """Fine-tune the decoder of the tokenizer in ``tokenizer_dir``; resumes from ``out_dir``.

    Writes ``out_dir/tokenizer`` (the stage-1 encoder and quantiser, bit for bit, with the new
    decoder), ``checkpoint/``, ``metrics.jsonl`` and ``samples/step-XXXXXXX.png`` (originals,
    stage-1 reconstructions, stage-2 reconstructions).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = LFQAutoencoder.from_pretrained(tokenizer_dir)
    tokenizer = LFQAutoencoder.from_pretrained(tokenizer_dir)
    torch.manual_seed(cfg.seed)
    disc = PatchDiscriminator(base.config.in_channels, cfg.disc_channels, cfg.disc_layers)
    _freeze_encoding_side(tokenizer)
    tokenizer.decoder.train()
    trainable = _Trainable(tokenizer, disc)
    opt = make_optimizer(trainable, cfg)
    regions = cfg.region_weight > 0
    stream = ImageStream(
        train_shards, base.config.resolution, cfg.batch_size, seed=cfg.seed, landmarks=regions
    )
    ckpt = find_checkpoint(out)
    step = 0
    if ckpt is None:
        record_init(out, tokenizer_dir, stage="decoder")  # the card names the stage-1 tokenizer
    else:
        _check_same_encoder(ckpt, base)
        changed = _changed_settings(ckpt, cfg)
        if changed:
            log(f"note: training settings differ from the checkpoint's: {changed}")
        step = load_checkpoint(ckpt, tokenizer, opt, stream, extra={DISC: disc})
        log(f"resuming from {ckpt} at step {step}")
    _trim_metrics(out / "metrics.jsonl", step)
    if sample_images_BCHW is None:
        sample_images_BCHW = ImageStream(
            train_shards, base.config.resolution, 8, shuffle=False
        ).next_batch()
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    t0, start_step = time.time(), step
    while step < end:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        images, marks = stream.next_batch_landmarks() if regions else (stream.next_batch(), None)
        parts = decoder_step(tokenizer, disc, opt, images, step, cfg, marks)
        step += 1
        if step % cfg.log_every == 0 or step == end:
            _log_step(out, log, step, cfg, parts, t0, start_step, SHOWN)
        if cfg.sample_every > 0 and (step % cfg.sample_every == 0 or step == cfg.steps):
            _write_samples(base, tokenizer, sample_images_BCHW, out / "samples", step)
        if step % cfg.ckpt_every == 0 or step == end:
            save_checkpoint(out, tokenizer, opt, step, stream, cfg, extra={DISC: disc})
            save_stage2_tokenizer(tokenizer, tokenizer_dir, out / "tokenizer")
    return tokenizer.eval()


def save_stage2_tokenizer(
    tokenizer: LFQAutoencoder, stage1_dir: str | Path, directory: str | Path
) -> None:
    """``tokenizer.save_pretrained(directory)``, with the encoder and quantiser stored exactly
    as in the stage-1 file they came from (its dtypes: a bf16 tokenizer, e.g. the bundled one,
    keeps bf16 there). Training upcasts them to fp32 without changing a value, but the code
    hash (:func:`.pretokenize.tokenizer_hash`) reads the stored bytes, so an fp32 copy would
    look like another tokenizer to ``data pretokenize`` and ``export --image-tokenizer``."""
    from safetensors import safe_open

    with safe_open(str(Path(stage1_dir) / "model.safetensors"), framework="pt") as f:
        stored = {k: f.get_slice(k).get_dtype() for k in f.keys() if k.startswith(ENCODING_SIDE)}
    dtypes = {k: _SAFETENSORS_DTYPES[v] for k, v in stored.items()}
    tokenizer.save_pretrained(directory, dtypes=dtypes)


_SAFETENSORS_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def _check_same_encoder(ckpt: Path, base: LFQAutoencoder) -> None:
    """Refuse to resume a stage-2 run on top of a different stage-1 tokenizer."""
    from safetensors.torch import load_file

    saved = load_file(str(ckpt / "model.safetensors"))
    for name, value in base.state_dict().items():
        if name.startswith(ENCODING_SIDE) and not torch.equal(saved[name], value):
            raise UserError(
                f"{ckpt} fine-tunes a different tokenizer (its encoder differs from "
                "--tokenizer's); use a new --out folder"
            )


@torch.no_grad()
def _write_samples(
    base: LFQAutoencoder, tuned: LFQAutoencoder, images_BCHW: torch.Tensor, folder: Path, step: int
) -> None:
    was_training = tuned.decoder.training
    tuned.decoder.eval()
    codes = base.encode(images_BCHW)
    save_grid(
        [images_BCHW, base.decode(codes), tuned.decode(codes)], folder / f"step-{step:07d}.png"
    )
    tuned.decoder.train(was_training)
