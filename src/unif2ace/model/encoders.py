"""Feature encoders feeding the sequence-level experts (NOTES.md §4), behind one interface.

Shape legend: B batch, C channels, H/W pixels, N feature tokens, F feature width.

Every encoder is an ``nn.Module`` with ``feature_dim`` and ``features(images_BCHW) ->
feats_BNF``; images are float RGB in [0, 1], any size. Registry names:

* ``cnn-semantic``, ``cnn-identity``: small in-project CNNs (the defaults; trained on
  FaceForge attributes / identity parameters in a separate step, then loaded as weights).
* ``hf-clip``: a transformers ``CLIPVisionModel`` from a local folder (``path=``).
* ``open-clip``: an open_clip model from a local checkpoint (``path=``, ``model_name=``).
* ``onnx-arcface``: an InsightFace/ArcFace-style ONNX recognition model (``path=``).

Real encoders load from local files only and never download; a missing package or file
raises :class:`UserError` naming the fix. The noise "encoder" of the Noise expert is
:class:`NoiseEmbedder` (sinusoidal embedding of the mask ratio, DiT-style, then an MLP).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

ENCODERS: dict[str, Callable[..., nn.Module]] = {}


def register_encoder(name: str):
    """Decorator adding an encoder factory ``factory(feature_dim, **kwargs)`` to the registry."""

    def deco(factory):
        ENCODERS[name] = factory
        return factory

    return deco


def build_encoder(name: str, feature_dim: int, **kwargs) -> nn.Module:
    """Build a registered encoder; unknown names fail with the list of valid ones."""
    if name not in ENCODERS:
        raise UserError(f"unknown encoder {name!r}; valid: {', '.join(sorted(ENCODERS))}")
    enc = ENCODERS[name](feature_dim, **kwargs)
    if enc.feature_dim != feature_dim:
        raise UserError(
            f"encoder {name!r} gives {enc.feature_dim}-dim features but the model config "
            f"expects {feature_dim}; set the config's feature dim to {enc.feature_dim}"
        )
    return enc


class CNNEncoder(nn.Module):
    """Small conv net: 4 stride-2 stages, then a 4x4 grid of tokens plus one global token.

    Returns feats_BNF with N = 17. ``head`` (optional) is the classifier used when the
    encoder is trained on FaceForge labels (attributes or identity parameters).
    """

    def __init__(self, feature_dim: int, width: int = 32, n_outputs: int = 0):
        super().__init__()
        self.feature_dim = feature_dim
        chans = [3, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            layers += [
                nn.Conv2d(cin, cout, 3, stride=2, padding=1),
                nn.GroupNorm(min(8, cout), cout),
                nn.GELU(),
            ]
        self.body = nn.Sequential(*layers)
        self.proj = nn.Linear(chans[-1], feature_dim)
        self.head = nn.Linear(feature_dim, n_outputs) if n_outputs else None

    def features(self, images_BCHW: torch.Tensor) -> torch.Tensor:
        h = self.body(images_BCHW * 2 - 1)
        grid = F.adaptive_avg_pool2d(h, 4).flatten(2).transpose(1, 2)
        tokens = torch.cat([h.mean((2, 3))[:, None], grid], dim=1)
        return self.proj(tokens)

    def forward(self, images_BCHW: torch.Tensor) -> torch.Tensor:
        """Classifier logits (needs ``n_outputs > 0``) from the global feature token."""
        if self.head is None:
            raise ValueError("this encoder has no classification head (n_outputs=0)")
        return self.head(self.features(images_BCHW)[:, 0])


@register_encoder("cnn-semantic")
@register_encoder("cnn-identity")
def _cnn(feature_dim: int, width: int = 32, n_outputs: int = 0, path=None, **_) -> nn.Module:
    """Fresh CNNEncoder, or with ``path=`` a trained, frozen one (``train encoders``)."""
    if path is not None:
        from .encoder_train import load_trained_encoder

        return load_trained_encoder(path, feature_dim)
    return CNNEncoder(feature_dim, width, n_outputs)


def _require(package: str, extra: str):
    try:
        return __import__(package)
    except ImportError:
        raise UserError(
            f"the {extra} encoder needs the '{package}' package; install it "
            f"(pip install {package}) or use the default cnn encoders"
        ) from None


def _local_path(path: str | None, what: str) -> Path:
    if not path or not Path(path).exists():
        raise UserError(f"{what} weights not found at {path!r}; pass path= to a local file/folder")
    return Path(path)


class _Frozen(nn.Module):
    """Wraps a pretrained image model: resize + normalise, no gradients."""

    def __init__(self, fn, feature_dim: int, size: int, mean, std):
        super().__init__()
        self._fn, self.feature_dim, self.size = fn, feature_dim, size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def features(self, images_BCHW: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images_BCHW.float(), size=(self.size, self.size), mode="bilinear")
        feats = self._fn((x - self.mean) / self.std)
        return feats if feats.dim() == 3 else feats[:, None]


_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@register_encoder("hf-clip")
def _hf_clip(feature_dim: int, path: str | None = None, **_) -> nn.Module:
    transformers = _require("transformers", "hf-clip")
    folder = _local_path(path, "CLIP vision model")
    model = transformers.CLIPVisionModel.from_pretrained(folder, local_files_only=True).eval()
    size = model.config.image_size
    enc = _Frozen(
        lambda x: model(pixel_values=x).last_hidden_state,
        model.config.hidden_size,
        size,
        _CLIP_MEAN,
        _CLIP_STD,
    )
    enc.model = model.requires_grad_(False)
    return enc


@register_encoder("open-clip")
def _open_clip(feature_dim: int, path: str | None = None, model_name: str = "ViT-B-32", **_):
    open_clip = _require("open_clip", "open-clip")
    ckpt = _local_path(path, "open_clip checkpoint")
    model = open_clip.create_model(model_name, pretrained=str(ckpt)).eval().requires_grad_(False)
    visual = model.visual
    size = visual.image_size[0] if isinstance(visual.image_size, tuple) else visual.image_size
    enc = _Frozen(visual, model.visual.output_dim, size, _CLIP_MEAN, _CLIP_STD)
    enc.model = visual
    return enc


@register_encoder("onnx-arcface")
def _onnx_arcface(feature_dim: int, path: str | None = None, **_) -> nn.Module:
    ort = _require("onnxruntime", "onnx-arcface")
    model_file = _local_path(path, "ArcFace ONNX")
    sess = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dim = int(sess.get_outputs()[0].shape[-1])

    def run(x: torch.Tensor) -> torch.Tensor:
        out = sess.run(None, {inp.name: x.cpu().numpy().astype("float32")})[0]
        return F.normalize(torch.from_numpy(out), dim=-1).to(x.device)

    # InsightFace recognition models take 112x112 RGB scaled as (x - 127.5) / 127.5.
    return _Frozen(run, dim, 112, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


class NoiseEmbedder(nn.Module):
    """F(noise level) of the Noise expert: sinusoidal embedding of the mask ratio -> tokens.

    The ratio in [0, 1] is scaled by 1000 (DiT's timestep range) before the sinusoid.
    Returns feats_BNF with N = ``n_tokens``.
    """

    def __init__(self, feature_dim: int, n_tokens: int, freq_dim: int = 64):
        super().__init__()
        self.feature_dim, self.n_tokens, self.freq_dim = feature_dim, n_tokens, freq_dim
        self.fc1 = nn.Linear(freq_dim, feature_dim)
        self.fc2 = nn.Linear(feature_dim, n_tokens * feature_dim)

    def forward(self, noise_level_B: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(
            -math.log(10000.0) * torch.arange(half, device=noise_level_B.device) / half
        )
        ang = noise_level_B.float()[:, None] * 1000.0 * freqs
        emb = torch.cat([ang.cos(), ang.sin()], dim=-1)
        h = self.fc2(F.silu(self.fc1(emb.to(self.fc1.weight.dtype))))
        return h.view(-1, self.n_tokens, self.feature_dim)
