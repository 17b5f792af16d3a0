"""``FacePipeline``: draw faces from text, describe faces and answer questions about them.

One object composes the trained pieces (DESIGN.md, "pipeline composes")::

    pipe = FacePipeline.from_pretrained()            # the bundled model (or a folder)
    images = pipe.generate(["a smiling woman with red curly hair"], seed=0)
    captions = pipe.describe(["face.png"])
    answers = pipe.ask(["face.png"], ["Is she wearing earrings?"])

Folder layout (the same for training checkpoints and the bundled model)::

    DIR/model.safetensors          UnifiedTransformer weights (bf16 or fp32)
    DIR/config.json                run config: "model" (ModelConfig), "layout" (VocabLayout),
                                   optional "sampling.sampler" (SamplerConfig) and "data"
                                   (max_text_len, encoder_images, encoder_resolution): see
                                   SamplingDefaults; other keys are kept on save
    DIR/image_tokenizer/           LFQAutoencoder.save_pretrained (config.json + weights)
    DIR/text_tokenizer/tokenizer.json

A folder saved with ``share_bundled=True`` holds no tokenizers: ``config.json`` records the
digests of the package's bundled ones ("bundled_parts"), which load in their place.

Generation runs the masked-diffusion sampler over the image codes with the prompt cache
(``make_image_denoiser``), then the image tokenizer's decoder; understanding encodes the image
to codes and decodes text with the KV cache (``generate_text``). The transformer runs with
bf16 weights by default (measured 2x faster than fp32 weights under autocast on AMX CPUs);
the image tokenizer stays fp32 so that codes match pretokenisation exactly.

Shape legend: B images, N image positions (grid²), R pixels (tokenizer resolution).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import from_dict, to_dict
from .data.sequences import CAPTION_INSTRUCTION, encode_answer
from .diffusion.samplers import SamplerConfig, build_sampler
from .errors import UserError
from .model import (
    UnifiedTransformer,
    answer_logprob,
    build_model,
    generate_text,
    make_image_denoiser,
)
from .model.config import ModelConfig
from .tokenizer.autoencoder import LFQAutoencoder
from .tokenizer.text import TextTokenizer
from .vocab import VocabLayout

MODEL_FILE, CONFIG_FILE = "model.safetensors", "config.json"
IMAGE_TOKENIZER_DIR, TEXT_TOKENIZER_DIR = "image_tokenizer", "text_tokenizer"
SHARED_KEY = "bundled_parts"  # config.json: {part folder: digest} taken from the package
FORMAT_KEY = "weights_format"  # config.json: how model.safetensors stores the weights (q8)
EXPORT_KEYS = (SHARED_KEY, FORMAT_KEY)  # what an export adds to the run config

Prompt = str | dict
ImageInput = Image.Image | str | Path


@dataclass
class SamplingDefaults:
    """Defaults of a pipeline, read from (and written back into) the run config.

    Attributes:
        sampler: image sampler settings, ``config.json["sampling"]["sampler"]`` (the trainer's
            :class:`~unif2ace.diffusion.samplers.SamplerConfig`).
        max_text_len: ``data.max_text_len`` of training: prompts are cut to it like at
            training, and captions stop after that many tokens.
        encoder_images, encoder_resolution: ``data.encoder_images`` / ``data.encoder_resolution``
            of training: whether the MMU sequence experts saw pixel features (at that size).
        answer_max_new_tokens, text_temperature, text_top_k, text_top_p: text decoding
            defaults (not saved).
        no_repeat_ngram: captions and answers never repeat an n-gram of this many tokens
            (0: off). Greedy decoding of a small model otherwise loops on a sentence, or
            restates it with a variation ("He has a full beard. He has a full beard, a
            mustache ..."). Chosen on 96 val faces with the bundled model (11,100 steps),
            caption attribute F1 / CIDEr-D for n = 0, 3, 4, 5, 7: 0.370 / 0.289, 0.384 / 0.261,
            0.482 / 0.409, 0.415 / 0.458, 0.389 / 0.356 — at 4 the caption moves on to
            attributes it has not named. The price: 24 % of FaceForge training captions repeat
            some 4-gram ("She is wearing a ..." twice; 5: 2.6 %, 7: none), a shape the rule
            forbids, so the model rephrases the second one.
    """

    sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig(guidance_scale=2.0))
    max_text_len: int = 96
    encoder_images: bool = True
    encoder_resolution: int = 64
    answer_max_new_tokens: int = 32
    text_temperature: float = 0.0
    text_top_k: int = 0
    text_top_p: float = 1.0
    no_repeat_ngram: int = 4

    @classmethod
    def from_run_config(cls, cfg: dict) -> SamplingDefaults:
        """Defaults of a run config dict (missing sections keep the defaults)."""
        base = cls()
        sampler = (cfg.get("sampling") or {}).get("sampler")
        data = cfg.get("data") or {}
        return cls(
            sampler=base.sampler
            if sampler is None
            else from_dict(SamplerConfig, sampler, "sampler"),
            max_text_len=int(data.get("max_text_len", base.max_text_len)),
            encoder_images=bool(data.get("encoder_images", base.encoder_images)),
            encoder_resolution=int(data.get("encoder_resolution", base.encoder_resolution)),
        )

    def into_run_config(self, cfg: dict) -> dict:
        """A copy of ``cfg`` with these defaults written into its sections."""
        out = copy.deepcopy(cfg)
        out.setdefault("sampling", {})["sampler"] = to_dict(self.sampler)
        data = out.setdefault("data", {})
        data["max_text_len"] = self.max_text_len
        data["encoder_images"] = self.encoder_images
        data["encoder_resolution"] = self.encoder_resolution
        return out


def bundled_model_dir() -> Path:
    """Where the bundled model lives (package data ``unif2ace/assets/model``)."""
    from . import bundled

    return bundled.path("model")


# --------------------------------------------------------------------------- inputs


def load_image(src: ImageInput) -> Image.Image:
    """A PIL image or an image path -> RGB image cropped to its centre square.

    Raises:
        UserError: missing file, unreadable/corrupt image, or an unsupported input type.
    """
    if isinstance(src, Image.Image):
        img = src
    elif isinstance(src, str | Path):
        p = Path(src)
        if not p.is_file():
            raise UserError(f"image file {str(p)!r} not found; check the path")
        try:
            img = Image.open(p)
            img.load()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise UserError(
                f"cannot read image {str(p)!r} ({err}); pass a valid PNG/JPEG file"
            ) from None
        img = ImageOps.exif_transpose(img)
    else:
        raise UserError(f"images must be PIL images or file paths, got {type(src).__name__}")
    img = img.convert("RGB")
    w, h = img.size
    side = min(w, h)
    if w == h:
        return img
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side))


def images_to_tensor(images: Sequence[Image.Image], resolution: int) -> torch.Tensor:
    """Square RGB images -> ``(B, 3, R, R)`` float32 in ``[-1, 1]`` (bicubic resize, as
    ``tokenizer.images.png_to_tensor`` does for pretokenisation and encoder inputs)."""
    arrs = []
    for img in images:
        if img.size != (resolution, resolution):
            img = img.resize((resolution, resolution), Image.BICUBIC)
        arrs.append(np.asarray(img, dtype=np.float32))
    return torch.from_numpy(np.stack(arrs) / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()


def tensor_to_images(images_BCHW: torch.Tensor) -> list[Image.Image]:
    """``(B, 3, H, W)`` in ``[-1, 1]`` -> RGB PIL images."""
    x = ((images_BCHW.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a) for a in x.permute(0, 2, 3, 1).cpu().numpy()]


def prompt_from_attributes(attributes: dict, rng: np.random.Generator, tries: int = 8) -> str:
    """Generation prompt for a (partial) attribute dict, e.g. ``{"hair_color": "red"}``.

    The dict is validated by the ontology (unknown names/values and contradictions raise
    UserError), completed to a coherent label set by FaceForge's conditional sampler, and
    worded by ``make_prompts`` — the prompt distribution the model was trained on. Among
    ``tries`` x 3 drawn prompts, the one stating most requested attributes (read back with
    the caption parser) wins, the shortest on ties.
    """
    from .data.caption_parser import parse_prompt
    from .data.faceforge.captions import make_prompts
    from .data.faceforge.labels import sample_labels
    from .data.ontology import validate

    if not attributes:
        raise UserError("empty attribute dict; name at least one attribute, e.g. hair_color")
    validate(attributes, partial=True)
    labels = sample_labels(rng, attributes)
    best: tuple[tuple[int, int], str] | None = None
    for _ in range(tries):
        for p in make_prompts(labels, rng, n=3):
            stated = parse_prompt(p)
            key = (sum(stated.get(k) == v for k, v in attributes.items()), -len(p))
            if best is None or key > best[0]:
                best = (key, p)
    return best[1]


def _as_list(x, what: str) -> list:
    items = [x] if isinstance(x, str | dict | Path | Image.Image) else list(x)
    if not items:
        raise UserError(f"no {what} given; pass at least one")
    return items


# --------------------------------------------------------------------------- the pipeline


@dataclass
class FacePipeline:
    """The transformer, its vocabulary layout, the two tokenizers and sampling defaults.

    Attributes:
        model: the network (eval mode).
        layout: vocabulary layout the model was built for.
        image_tokenizer: LFQ autoencoder (codes <-> images), fp32.
        text_tokenizer: BPE text tokenizer.
        sampling: defaults used when a call does not override them.
        extra_config: other keys of the run config (training settings), kept on save.
    """

    model: UnifiedTransformer
    layout: VocabLayout
    image_tokenizer: LFQAutoencoder
    text_tokenizer: TextTokenizer
    sampling: SamplingDefaults = field(default_factory=SamplingDefaults)
    extra_config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.layout.codebook_size != self.image_tokenizer.codebook_size:
            raise UserError(
                f"layout codebook size {self.layout.codebook_size} != image tokenizer's "
                f"{self.image_tokenizer.codebook_size}; use the model's own image tokenizer"
            )
        if self.layout.text_vocab_size != self.text_tokenizer.vocab_size:
            raise UserError(
                f"layout text vocabulary {self.layout.text_vocab_size} != text tokenizer's "
                f"{self.text_tokenizer.vocab_size}; use the model's own text tokenizer"
            )
        self.model.eval()
        self.image_tokenizer.eval()

    # --- properties ----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed_tokens.weight.dtype

    @property
    def resolution(self) -> int:
        return self.image_tokenizer.config.resolution

    @property
    def num_image_tokens(self) -> int:
        return self.image_tokenizer.config.grid**2

    # --- persistence ---------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        dir: str | Path | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.bfloat16,
    ) -> FacePipeline:
        """Load a model folder (see the module docstring), or the newest checkpoint of a
        training run folder (``OUT`` of ``unif2ace train model``); ``None`` or the word
        ``bundled`` = the bundled model (as ``init.checkpoint=bundled`` and ``--tokenizer
        bundled`` name it).

        ``dtype`` is the transformer's weight dtype (bf16 default; fp32 for reference runs).
        Weights are read with safetensors (never unpickled) and cast on load.
        """
        from .bundled import BUNDLED
        from .train.checkpoint import load_model_weights

        if dir is not None and str(dir) == BUNDLED:
            dir = None
        d = _resolve_folder(Path(dir)) if dir is not None else bundled_model_dir()
        cfg = _read_config(d, bundled=dir is None)
        layout = VocabLayout.from_dict(cfg["layout"])
        model = build_model(ModelConfig.from_dict(cfg["model"]), layout).to(dtype=dtype)
        load_model_weights(d / MODEL_FILE, model)
        shared = cfg.get(SHARED_KEY, {})
        image_tok = LFQAutoencoder.from_pretrained(_part(d, IMAGE_TOKENIZER_DIR, shared))
        text_tok = TextTokenizer.from_file(_part(d, TEXT_TOKENIZER_DIR, shared))
        extra = {k: v for k, v in cfg.items() if k not in ("model", "layout")}
        defaults = SamplingDefaults.from_run_config(cfg)
        return cls(model, layout, image_tok, text_tok, defaults, extra).to(device)

    def to(self, device: str | torch.device) -> FacePipeline:
        """Move the model and the image tokenizer to ``device`` (in place); returns self."""
        self.model.to(device)
        self.image_tokenizer.to(device)
        return self

    def save_pretrained(
        self, dir: str | Path, q8: bool = False, share_bundled: bool = False
    ) -> Path:
        """Write the folder layout of the module docstring atomically (temp folder + rename).

        ``config.json`` is the loaded run config with the current model config, layout and
        defaults written in, so a trainer checkpoint stays a valid run config. ``q8``: store
        the transformer's large weights as 8-bit blocks (:mod:`unif2ace.quant`, ~0.53× the
        bf16 file); loading dequantises them. ``share_bundled``: the tokenizers are the ones
        shipped in the package (checked), so the folder records their digests instead of
        holding copies (the bundled model does this: one image tokenizer in the package).
        """
        from .quant import FORMAT
        from .train.checkpoint import atomic_dir, save_model_weights

        cfg = self.sampling.into_run_config(self.extra_config)
        cfg["model"], cfg["layout"] = self.model.cfg.to_dict(), self.layout.to_dict()
        for key in EXPORT_KEYS:
            cfg.pop(key, None)
        if q8:
            cfg[FORMAT_KEY] = FORMAT
        if share_bundled:
            cfg[SHARED_KEY] = self._bundled_digests()
        with atomic_dir(Path(dir)) as tmp:
            save_model_weights(self.model, tmp / MODEL_FILE, q8=q8)
            (tmp / CONFIG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True, default=str))
            if not share_bundled:
                self.image_tokenizer.save_pretrained(tmp / IMAGE_TOKENIZER_DIR)
                self.text_tokenizer.save(tmp / TEXT_TOKENIZER_DIR)
        return Path(dir)

    def _bundled_digests(self) -> dict[str, str]:
        """{folder name: digest} of the bundled tokenizers, after checking they are this
        pipeline's own (same weights up to storage dtype; same tokenizer.json)."""
        from . import bundled

        img = LFQAutoencoder.from_pretrained(bundled.resolve("bundled", "image_tokenizer"))
        own = self.image_tokenizer.state_dict()
        same_img = img.config == self.image_tokenizer.config and all(
            torch.equal(v.float(), own[k].float().cpu()) for k, v in img.state_dict().items()
        )
        txt = TextTokenizer.from_file(bundled.resolve("bundled", "text_tokenizer"))
        if not same_img or txt.to_str() != self.text_tokenizer.to_str():
            raise UserError(
                "this model's tokenizers are not the bundled ones; save it with its own "
                "copies (without share_bundled / --share-bundled-tokenizers)"
            )
        return {
            IMAGE_TOKENIZER_DIR: bundled.digest("image_tokenizer"),
            TEXT_TOKENIZER_DIR: bundled.digest("text_tokenizer"),
        }

    # --- generation ----------------------------------------------------------------------
    def prompt_texts(self, prompts: Prompt | Sequence[Prompt], seed: int = 0) -> list[str]:
        """Prompts as text: strings pass through (stripped), attribute dicts are worded by
        :func:`prompt_from_attributes` with ``numpy.random.default_rng(seed)``."""
        rng = np.random.default_rng(seed)
        out = []
        for p in _as_list(prompts, "prompts"):
            if isinstance(p, dict):
                out.append(prompt_from_attributes(p, rng))
            elif isinstance(p, str):
                out.append(p.strip())
            else:
                raise UserError(f"a prompt must be text or an attribute dict, not {type(p)}")
        return out

    def sampler_config(self, **overrides) -> SamplerConfig:
        """The image sampler :meth:`generate` uses: the model's defaults with the ``overrides``
        that are not None (``num_steps``, ``guidance_scale``, ...)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self.sampling.sampler, **given)

    @torch.no_grad()
    def generate_codes(
        self,
        prompts: Prompt | Sequence[Prompt],
        *,
        num_steps: int | None = None,
        guidance_scale: float | None = None,
        sampler: str | None = None,
        temperature: float | None = None,
        seed: int = 0,
        batch_size: int = 8,
        allow_unconditional: bool = False,
    ) -> torch.Tensor:
        """Image codes ``(B, N)`` for the prompts; arguments as :meth:`generate`."""
        texts = self.prompt_texts(prompts, seed)
        if not allow_unconditional and any(not t for t in texts):
            raise UserError(
                "empty prompt; describe the face to draw, or pass allow_unconditional=True "
                "for an unconditional sample"
            )
        _check_batch_size(batch_size)
        cfg = self.sampler_config(
            name=sampler,
            num_steps=num_steps,
            guidance_scale=guidance_scale,
            temperature=temperature,
        )
        sample = build_sampler(cfg)
        cut = max(self.sampling.max_text_len - 3, 0)  # training's cut of "<|t2i|> bos . eos"
        ids = [t[:cut] for t in self.text_tokenizer.encode_batch(texts)]
        K, N = self.layout.codebook_size, self.num_image_tokens
        gen = torch.Generator().manual_seed(seed)  # CPU draws: the same on every device
        out = []
        for i in range(0, len(ids), batch_size):
            chunk = ids[i : i + batch_size]
            guided = cfg.guidance_scale > 0
            den = make_image_denoiser(self.model, self.layout, chunk, with_uncond=guided)
            init = torch.full((len(chunk), N), K, dtype=torch.long, device=self.device)
            out.append(sample(den, init, mask_token=K, codebook_size=K, generator=gen).codes_BN)
        return torch.cat(out)

    def generate(self, prompts: Prompt | Sequence[Prompt], **kwargs) -> list[Image.Image]:
        """Draw one face per prompt.

        Args:
            prompts: text, an attribute dict (``{"hair_color": "red", "smile": True}``,
                validated by the ontology), or a list of them.
            num_steps, guidance_scale, sampler ("maskgit" | "ancestral"), temperature:
                sampler settings (default: ``self.sampling.sampler``; guidance 0 = off).
            seed: same seed, prompts and batch_size => the same images.
            batch_size: prompts per sampler run (2x rows with guidance).
            allow_unconditional: accept empty prompts (unconditional samples).

        Returns:
            RGB PIL images at the tokenizer resolution, one per prompt.
        """
        return self.decode_codes(self.generate_codes(prompts, **kwargs))

    @torch.no_grad()
    def decode_codes(self, codes_BN: torch.Tensor) -> list[Image.Image]:
        """Image codes ``(B, N)`` -> PIL images (the image tokenizer's decoder, fp32)."""
        g = self.image_tokenizer.config.grid
        return tensor_to_images(self.image_tokenizer.decode(codes_BN.view(-1, g, g)))

    # --- understanding -------------------------------------------------------------------
    @torch.no_grad()
    def encode_images(
        self, images: Sequence[ImageInput]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """Images -> (codes ``(B, N)``, features for the MMU sequence experts or None).

        Codes: fp32 tokenizer on ``[-1, 1]`` pixels (as pretokenisation). Features: the
        model's encoders on ``[0, 1]`` pixels at ``encoder_resolution`` (as training).
        """
        squares = [load_image(x) for x in images]
        x = images_to_tensor(squares, self.resolution).to(self.device)
        codes = self.image_tokenizer.encode(x).flatten(1)
        feats = None
        if self.sampling.encoder_images and len(self.model.encoders):
            e = images_to_tensor(squares, self.sampling.encoder_resolution).to(self.device)
            feats = self.model.encode_images(((e + 1) / 2).to(self.dtype))
        return codes, feats

    @torch.no_grad()
    def _decode_text(self, images, questions: list[list[int]], max_new_tokens: int, opts):
        s = self.sampling
        known = {"temperature", "top_k", "top_p", "seed", "batch_size", "no_repeat_ngram"}
        unknown = sorted(set(opts) - known)
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {unknown}")
        batch_size = _check_batch_size(opts.get("batch_size", 8))
        gen = torch.Generator(self.device).manual_seed(opts.get("seed", 0))
        out: list[str] = []
        for i in range(0, len(images), batch_size):
            # one image asked several questions is encoded, and its prefix run, once
            unique, index = _dedupe(images[i : i + batch_size])
            codes, feats = self.encode_images(unique)
            res = generate_text(
                self.model,
                self.layout,
                codes,
                questions[i : i + batch_size],
                image_index=index,
                max_new_tokens=max_new_tokens,
                temperature=opts.get("temperature", s.text_temperature),
                top_k=opts.get("top_k", s.text_top_k),
                top_p=opts.get("top_p", s.text_top_p),
                generator=gen,
                encoder_feats=feats,
                no_repeat_ngram=opts.get("no_repeat_ngram", s.no_repeat_ngram),
            )
            out += [self.text_tokenizer.decode(t).strip() for t in res.tokens]
        return out

    def describe(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        max_new_tokens: int | None = None,
        **opts,
    ) -> list[str]:
        """Caption each image (greedy unless ``temperature`` > 0).

        Args:
            images: PIL images or paths (a single one is accepted too).
            max_new_tokens: caption length limit (default ``sampling.max_text_len``).
            opts: ``temperature``, ``top_k``, ``top_p``, ``seed``, ``batch_size`` (8),
                ``no_repeat_ngram`` (default ``sampling.no_repeat_ngram``).
        """
        items = _as_list(images, "images")
        q = self.text_tokenizer.encode(CAPTION_INSTRUCTION)
        n = max_new_tokens or self.sampling.max_text_len
        return self._decode_text(items, [q] * len(items), n, opts)

    def ask(
        self,
        images: ImageInput | Sequence[ImageInput],
        questions: str | Sequence[str],
        *,
        max_new_tokens: int | None = None,
        **opts,
    ) -> list[str]:
        """Answer questions: one per image, several about one image, or one for several
        images. Options as :meth:`describe` (default length ``answer_max_new_tokens``)."""
        items, qs = _as_list(images, "images"), _as_list(questions, "questions")
        if len(items) == 1 and len(qs) > 1:
            items = items * len(qs)
        elif len(qs) == 1 and len(items) > 1:
            qs = qs * len(items)
        if len(items) != len(qs):
            raise UserError(f"{len(items)} images but {len(qs)} questions; give one per image")
        if any(not isinstance(q, str) or not q.strip() for q in qs):
            raise UserError("empty question; ask something about the face")
        ids = self.text_tokenizer.encode_batch([q.strip() for q in qs])
        n = max_new_tokens or self.sampling.answer_max_new_tokens
        return self._decode_text(items, ids, n, opts)

    @torch.no_grad()
    def answer_probability(
        self,
        images: ImageInput | Sequence[ImageInput],
        questions: Sequence[str],
        answers: Sequence[str],
        batch_size: int = 8,
    ) -> list[float]:
        """P(``answers[i]`` | image i, question i): the VQAScore of Lin et al. (2024,
        "Evaluating Text-to-Visual Generation with Image-to-Text Generation") with this model
        as the VQA model, e.g. ``answers = ["Yes"] * n``. The answer is read as training
        writes it (:func:`~unif2ace.data.sequences.encode_answer`: with a leading space, for
        Yes/No its own token) and its probability is the product over its tokens, each a
        softmax over the text vocabulary (special tokens other than eos excluded) given the
        tokens before (:func:`~unif2ace.model.text_decode.answer_logprob`, one forward per
        batch)."""
        items = _as_list(images, "images")
        if not (len(items) == len(questions) == len(answers)):
            raise UserError(
                f"{len(items)} images, {len(questions)} questions and {len(answers)} answers; "
                "give one of each per row"
            )
        if any(not isinstance(a, str) or not a.strip() for a in answers):
            raise UserError("empty answer; give the answer whose probability to score")
        ans = [encode_answer(self.text_tokenizer, a.strip()) for a in answers]
        q_ids = self.text_tokenizer.encode_batch([q.strip() for q in questions])
        out: list[float] = []
        for i in range(0, len(items), _check_batch_size(batch_size)):
            unique, index = _dedupe(items[i : i + batch_size])
            codes, feats = self.encode_images(unique)
            lp = answer_logprob(self.model, self.layout, codes, q_ids[i : i + batch_size],
                                ans[i : i + batch_size], encoder_feats=feats,
                                image_index=index)  # fmt: skip
            out += lp.exp().tolist()
        return out


def _dedupe(images: Sequence[ImageInput]) -> tuple[list[ImageInput], list[int]]:
    """(distinct images, index of each input among them): the same object, or the same
    path, counts once."""
    unique: list[ImageInput] = []
    seen: dict = {}
    index = []
    for x in images:
        key = ("path", str(x)) if isinstance(x, (str, Path)) else ("obj", id(x))
        if key not in seen:
            seen[key] = len(unique)
            unique.append(x)
        index.append(seen[key])
    return unique, index


def _check_batch_size(batch_size: int) -> int:
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    return batch_size


def _resolve_folder(d: Path) -> Path:
    """A model folder as given, or the newest checkpoint of a training run folder.

    A run folder also holds a ``config.json`` (the resolved run config) but no weights, so
    the weights file decides."""
    if (d / MODEL_FILE).is_file():
        return d
    from .train.checkpoint import find_latest

    return find_latest(d) or d


def _part(d: Path, name: str, shared: dict) -> Path:
    """The folder's own ``name`` part, or the bundled one it records (digest checked)."""
    if name not in shared or (d / name).exists():
        return d / name
    from . import bundled

    part = {IMAGE_TOKENIZER_DIR: "image_tokenizer", TEXT_TOKENIZER_DIR: "text_tokenizer"}[name]
    if not bundled.available(part) or bundled.digest(part) != shared[name]:
        raise UserError(
            f"{d} uses the {part.replace('_', ' ')} bundled with the unif2ace it was saved "
            f"by (digest {shared[name]}), which this install does not have; install that "
            "version, or copy its tokenizer into the folder"
        )
    return bundled.path(part)


def _read_config(d: Path, bundled: bool) -> dict:
    if not d.is_dir() or not (d / CONFIG_FILE).is_file():
        if bundled:
            raise UserError(
                f"no bundled model at {d}: it has not been trained and packaged yet; pass a "
                "checkpoint folder (--checkpoint DIR, or FacePipeline.from_pretrained(DIR))"
            )
        raise UserError(
            f"{str(d)!r} is not a model folder (needs {CONFIG_FILE}, {MODEL_FILE}, "
            f"{IMAGE_TOKENIZER_DIR}/ and {TEXT_TOKENIZER_DIR}/); pass a checkpoint folder"
        )
    try:
        cfg = json.loads((d / CONFIG_FILE).read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{str(d / CONFIG_FILE)!r} is not valid JSON ({err})") from None
    missing = [k for k in ("model", "layout") if k not in cfg]
    if missing:
        raise UserError(f"{str(d / CONFIG_FILE)!r} lacks key(s) {missing}; not a model config")
    return cfg


__all__ = [
    "FacePipeline",
    "SamplingDefaults",
    "bundled_model_dir",
    "images_to_tensor",
    "load_image",
    "prompt_from_attributes",
    "tensor_to_images",
]
