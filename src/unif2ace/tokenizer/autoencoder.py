"""MAGVIT-v2-style convolutional autoencoder with lookup-free quantisation.

Encoder: conv -> [res blocks, stride-2 conv] per level -> mid res blocks -> GroupNorm/SiLU ->
1x1 conv to ``codebook_bits`` channels -> :class:`~unif2ace.tokenizer.lfq.LFQ`. The decoder
mirrors it with nearest-neighbour upsampling. MAGVIT-v2 (Yu et al., 2023, Sec. 3.2 and
Appendix) uses the same residual conv design (no attention) and an LFQ bottleneck.

Images are ``(B, 3, H, W)`` in ``[-1, 1]``; codes are ``(B, H/f, W/f)`` int64 in
``[0, 2^bits)`` with ``f = 2^(len(channel_mult) - 1)``.

Checkpoints are a folder with ``model.safetensors`` and ``config.json`` (never pickle).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..atomic import atomic_path, write_text_atomic
from ..errors import UserError
from .lfq import LFQ, LFQOutput, codes_to_bits


@dataclass(frozen=True)
class TokenizerConfig:
    """Shape and loss weights of the LFQ autoencoder (saved as ``config.json``).

    ``channel_mult`` has one entry per resolution level; every level but the last halves the
    resolution, so the downsampling factor is ``2^(len(channel_mult) - 1)``.
    """

    resolution: int = 128
    in_channels: int = 3
    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 2
    codebook_bits: int = 12
    entropy_weight: float = 0.1
    commitment_weight: float = 0.25
    entropy_gamma: float = 1.0
    inv_temperature: float = 1.0
    entropy_groups: int = 1
    # Space-to-depth stem: the encoder starts with pixel_unshuffle(patch_size) and the decoder
    # ends with pixel_shuffle(patch_size), so no conv runs at full resolution (lossless
    # rearrangement; ~3x fewer FLOPs at 128 px for the same depth).
    patch_size: int = 1
    # Normalisation layers: "group" (GroupNorm, as VQGAN / MAGVIT-v2) or "channel" (LayerNorm
    # over the channels of each pixel). GroupNorm normalises every group over the whole image,
    # so it removes each image's mean per group before the code layer and before the output:
    # absolute colour (a purple vs a grey background) must then be re-encoded as spatial
    # contrast, which short CPU trainings never learn (reconstructions drift to grey).
    norm: str = "group"

    @property
    def downsample(self) -> int:
        return self.patch_size * 2 ** (len(self.channel_mult) - 1)

    @property
    def grid(self) -> int:
        """Side of the token grid (tokens per image = ``grid**2``)."""
        return self.resolution // self.downsample

    @property
    def codebook_size(self) -> int:
        return 2**self.codebook_bits

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TokenizerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {"type", "downsample", "grid", "codebook_size"})
        if unknown:
            raise UserError(f"unknown tokenizer config keys {unknown}; valid: {sorted(known)}")
        kw = {k: v for k, v in d.items() if k in known}
        if "channel_mult" in kw:
            kw["channel_mult"] = tuple(kw["channel_mult"])
        return cls(**kw)


# Presets. `small` = the CPU default: 128 px, f=8 -> 16x16 = 256 tokens of 12 bits. Measured
# on FaceForge renders: at 64 px eye colour covers ~5 px and only 27% of its 128-px signal
# survives a 64-px bottleneck (moles 61%, earrings 53%), so 64 px/f=4 would lose the fine
# attributes before any quantisation; 256 tokens keep the model's sequences at ~320 tokens.
# A 2x2 space-to-depth stem (patch_size=2) replaces the full-resolution convs: 21.9 vs 27.3
# GFLOP per image (fwd+bwd) and 0.51 vs 1.01 s per batch-16 step on 2 cores under bf16.
# Channel LayerNorm instead of GroupNorm (see TokenizerConfig.norm): after 400 steps of the same
# run, GroupNorm reconstructions had grey, wrong backgrounds even with an unquantised bottleneck;
# with channel norm (and LFQ) the colours were right. Entropy weight 0.02 (not 0.1): 5-13 %
# lower L1 at equal steps, codebook still well used.
# `paper` = MAGVIT-v2 / Show-o shape (8,192 codes, f=16, 256 px; widths of Open-MAGVIT2's
# 256-px image tokenizer: 128 channels, multipliers 1-1-2-2-4, 4 residual blocks per level).
PRESETS: dict[str, TokenizerConfig] = {
    "tiny": TokenizerConfig(
        resolution=32, base_channels=16, channel_mult=(1, 2), num_res_blocks=1, codebook_bits=6
    ),
    "small": TokenizerConfig(
        resolution=128,
        base_channels=48,
        channel_mult=(1, 2, 4),
        num_res_blocks=2,
        codebook_bits=12,
        entropy_weight=0.02,
        entropy_groups=2,
        patch_size=2,
        norm="channel",
    ),
    "paper": TokenizerConfig(
        resolution=256,
        base_channels=128,
        channel_mult=(1, 1, 2, 2, 4),
        num_res_blocks=4,
        codebook_bits=13,
        entropy_groups=2,
    ),
}


def preset_config(name: str) -> TokenizerConfig:
    """The :class:`TokenizerConfig` of a named preset (``tiny``, ``small``, ``paper``)."""
    if name not in PRESETS:
        raise UserError(f"unknown tokenizer preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of each pixel: ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(channels)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.ln(x_BCHW.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def make_norm(kind: str, channels: int) -> nn.Module:
    """The normalisation layer of :attr:`TokenizerConfig.norm`."""
    if kind == "group":
        return nn.GroupNorm(_groups(channels), channels)
    if kind == "channel":
        return ChannelNorm(channels)
    raise UserError(f"unknown tokenizer norm {kind!r}; valid: group, channel")


def _groups(channels: int) -> int:
    """Largest group count <= 32 dividing ``channels`` (GroupNorm)."""
    return next(g for g in range(min(32, channels), 0, -1) if channels % g == 0)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv x2 with a (1x1 if needed) skip; ``(B, Cin, H, W) -> (B, Cout, H, W)``."""

    def __init__(self, c_in: int, c_out: int, norm: str = "group") -> None:
        super().__init__()
        self.norm1 = make_norm(norm, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = make_norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x_BCHW)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x_BCHW) + h


class Encoder(nn.Module):
    """Images ``(B, 3, H, W)`` -> continuous latents ``(B, bits, H/f, W/f)``."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        chans = [cfg.base_channels * m for m in cfg.channel_mult]
        self.patch = cfg.patch_size
        self.conv_in = nn.Conv2d(cfg.in_channels * self.patch**2, chans[0], 3, padding=1)
        blocks: list[nn.Module] = []
        c = chans[0]
        for level, c_out in enumerate(chans):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(c, c_out, cfg.norm))
                c = c_out
            if level < len(chans) - 1:
                blocks.append(nn.Conv2d(c, c, 4, stride=2, padding=1))
        blocks += [ResBlock(c, c, cfg.norm), ResBlock(c, c, cfg.norm)]
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = make_norm(cfg.norm, c)
        self.conv_out = nn.Conv2d(c, cfg.codebook_bits, 1)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        if self.patch > 1:
            x_BCHW = F.pixel_unshuffle(x_BCHW, self.patch)
        h = self.blocks(self.conv_in(x_BCHW))
        return self.conv_out(F.silu(self.norm_out(h)))


class Upsample(nn.Module):
    """Nearest x2 then 3x3 conv."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x_BCHW, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    """Quantised latents ``(B, bits, h, w)`` -> images ``(B, 3, h·f, w·f)`` (unbounded)."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        chans = [cfg.base_channels * m for m in cfg.channel_mult][::-1]
        c = chans[0]
        self.conv_in = nn.Conv2d(cfg.codebook_bits, c, 3, padding=1)
        blocks: list[nn.Module] = [ResBlock(c, c, cfg.norm), ResBlock(c, c, cfg.norm)]
        for level, c_out in enumerate(chans):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(c, c_out, cfg.norm))
                c = c_out
            if level < len(chans) - 1:
                blocks.append(Upsample(c))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = make_norm(cfg.norm, c)
        self.patch = cfg.patch_size
        self.conv_out = nn.Conv2d(c, cfg.in_channels * self.patch**2, 3, padding=1)

    def forward(self, z_BDHW: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.conv_in(z_BDHW))
        out = self.conv_out(F.silu(self.norm_out(h)))
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out


@dataclass
class AutoencoderOutput:
    """Result of :meth:`LFQAutoencoder.forward`: reconstruction ``(B, 3, H, W)`` and LFQ terms."""

    recon_BCHW: torch.Tensor
    lfq: LFQOutput


class LFQAutoencoder(nn.Module):
    """The image tokenizer: ``encode`` images to codes, ``decode`` codes to images."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        if cfg.resolution % cfg.downsample:
            raise UserError(
                f"resolution {cfg.resolution} is not divisible by the downsampling factor "
                f"{cfg.downsample}; change resolution or channel_mult"
            )
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.quantizer = LFQ(
            cfg.codebook_bits,
            entropy_weight=cfg.entropy_weight,
            commitment_weight=cfg.commitment_weight,
            gamma=cfg.entropy_gamma,
            inv_temperature=cfg.inv_temperature,
            entropy_groups=cfg.entropy_groups,
        )
        self.decoder = Decoder(cfg)

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def forward(self, images_BCHW: torch.Tensor) -> AutoencoderOutput:
        """Encode, quantise (straight-through) and decode, for training."""
        lfq = self.quantizer(self.encoder(images_BCHW))
        return AutoencoderOutput(self.decoder(lfq.quantized_BDHW), lfq)

    @torch.no_grad()
    def encode(self, images_BCHW: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in ``[-1, 1]`` -> codes ``(B, H/f, W/f)`` int64."""
        if images_BCHW.ndim != 4 or images_BCHW.shape[1] != self.config.in_channels:
            raise UserError(
                f"encode expects images (B, {self.config.in_channels}, H, W), got "
                f"{tuple(images_BCHW.shape)}"
            )
        return self.quantizer(self.encoder(images_BCHW)).codes_BHW

    @torch.no_grad()
    def decode(self, codes_BHW: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, h, w)`` -> images ``(B, 3, h·f, w·f)`` clamped to ``[-1, 1]``."""
        if codes_BHW.min() < 0 or codes_BHW.max() >= self.codebook_size:
            raise UserError(f"codes must lie in [0, {self.codebook_size}); got ids outside")
        z = codes_to_bits(codes_BHW, self.config.codebook_bits).to(self.decoder.conv_in.weight)
        return self.decoder(z).float().clamp(-1.0, 1.0)

    # --- persistence -------------------------------------------------------------------------
    def save_pretrained(
        self, directory: str | Path, dtypes: dict[str, torch.dtype] | None = None
    ) -> None:
        """Write ``model.safetensors`` and ``config.json`` into ``directory`` (atomic renames).

        ``dtypes``: storage dtype per weight name where it should differ from the module's
        (loading casts back to the module's)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        dtypes = dtypes or {}
        state = {
            k: v.detach().to(dtypes.get(k, v.dtype)).contiguous()
            for k, v in self.state_dict().items()
        }
        with atomic_path(d / "model.safetensors") as tmp:
            save_file(state, str(tmp))
        cfg = {"type": "lfq_autoencoder", **self.config.to_dict()}
        write_text_atomic(d / "config.json", json.dumps(cfg, indent=2))  # hashed: keep bytes

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str = "cpu") -> LFQAutoencoder:
        """Load a tokenizer saved by :meth:`save_pretrained`."""
        d = Path(directory)
        if not (d / "config.json").is_file() or not (d / "model.safetensors").is_file():
            raise UserError(
                f"{d} is not an image tokenizer folder (needs config.json and "
                "model.safetensors); train one with `unif2ace train tokenizer`"
            )
        cfg = TokenizerConfig.from_dict(json.loads((d / "config.json").read_text()))
        model = cls(cfg)
        model.load_state_dict(load_file(str(d / "model.safetensors"), device=device))
        return model.to(device).eval()


def grow_codebook(model: LFQAutoencoder, extra_bits: int, seed: int = 0) -> LFQAutoencoder:
    """A copy of ``model`` with ``extra_bits`` more code bits, appended as the low bits.

    The codebook grows from ``2^D`` to ``2^(D+n)`` without forgetting what was learned: the
    encoder's output conv keeps its ``D`` rows and gains ``n`` new ones (default conv init
    scaled by 0.1, seeded), the decoder's input conv keeps its ``D`` input channels and gains
    ``n`` zero ones. So ``grown.encode(x) >> n == model.encode(x)`` exactly, and at first the
    decoder ignores the new bits: ``grown.decode(c << n | b) == model.decode(c)`` for any
    ``b``. Training then decides what the new bits carry (MAGVIT-v2's 13-bit codebook from a
    12-bit one, say, without retraining the encoder from scratch).
    """
    if extra_bits < 1:
        raise UserError(f"extra_bits must be >= 1, got {extra_bits}")
    old = model.config
    cfg = TokenizerConfig.from_dict(
        {**old.to_dict(), "codebook_bits": old.codebook_bits + extra_bits}
    )
    grown = LFQAutoencoder(cfg)
    state = {k: v.detach().float().clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    w_out = grown.encoder.conv_out.weight.detach()
    fan_in = w_out.shape[1]
    bound = 1.0 / fan_in**0.5  # nn.Conv2d's default init range
    new_w = (torch.rand((extra_bits, *w_out.shape[1:]), generator=gen) * 2 - 1) * bound * 0.1
    new_b = (torch.rand(extra_bits, generator=gen) * 2 - 1) * bound * 0.1
    state["encoder.conv_out.weight"] = torch.cat([state["encoder.conv_out.weight"], new_w])
    state["encoder.conv_out.bias"] = torch.cat([state["encoder.conv_out.bias"], new_b])
    w_in = state["decoder.conv_in.weight"]  # (C, D, 3, 3)
    zeros = w_in.new_zeros((w_in.shape[0], extra_bits, *w_in.shape[2:]))
    state["decoder.conv_in.weight"] = torch.cat([w_in, zeros], dim=1)
    grown.load_state_dict(state)
    return grown.eval()


def build_tokenizer(preset: str | TokenizerConfig = "small", **overrides) -> LFQAutoencoder:
    """Build an untrained :class:`LFQAutoencoder` from a preset name or config (+ overrides)."""
    cfg = preset_config(preset) if isinstance(preset, str) else preset
    if overrides:
        cfg = TokenizerConfig.from_dict({**cfg.to_dict(), **overrides})
    return LFQAutoencoder(cfg)
