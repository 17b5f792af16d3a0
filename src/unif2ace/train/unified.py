"""Training the UniF²ace model: presets, self-describing checkpoints, sample grids, the run.

Shape legend: B images, N image positions, h/w code grid.

A checkpoint folder ``OUT/checkpoints/step-N/`` is a complete, loadable model::

    model.safetensors            weights (ema.safetensors too when EMA is on)
    config.json                  the resolved RunConfig plus "layout" (VocabLayout.to_dict())
    image_tokenizer/             LFQAutoencoder.save_pretrained layout
    text_tokenizer/tokenizer.json
    trainer_state.*              optimizer, counters, RNG (resume)

``load_trained(folder)`` rebuilds the network from it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..atomic import write_text_atomic
from ..config import from_dict, load_yaml, to_dict
from ..errors import UserError
from ..vocab import VocabLayout
from .task import MixedTaskData, RunConfig, build_training_model, make_step_fn

PRESET_NAMES = ("tiny", "small", "ablation", "paper")
IMAGE_TOKENIZER_DIR, TEXT_TOKENIZER_DIR = "image_tokenizer", "text_tokenizer"


def configs_dir() -> Path:
    """The repository's ``configs/`` folder (presets are data, not code)."""
    return Path(__file__).resolve().parents[3] / "configs"


def load_run_config(preset: str, overrides: list[str] | None = None) -> RunConfig:
    """A preset name (``configs/<name>.yaml``) or a YAML path, with dotted overrides."""
    path = Path(preset)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = configs_dir() / f"{preset}.yaml"
        if not path.is_file():
            raise UserError(
                f"unknown preset {preset!r}; valid: {', '.join(PRESET_NAMES)} or a .yaml file"
            )
    return with_bundled_parts(load_yaml(RunConfig, path, overrides))


def with_bundled_parts(cfg: RunConfig) -> RunConfig:
    """``cfg`` with every part set to the word ``bundled`` (image and text tokenizer, the two
    encoders, the warm-start model) replaced by the path of the one shipped in the package."""
    from .. import bundled

    for key, part in bundled.CONFIG_PARTS.items():
        section, name = key.split(".")
        obj = getattr(cfg, section)
        setattr(obj, name, str(bundled.resolve(getattr(obj, name), part)))
    return cfg


def checkpoint_config(cfg: RunConfig, layout: VocabLayout) -> dict:
    """What ``config.json`` of a checkpoint holds: the run config and the layout.

    A warm start given as a relative path is recorded absolute, so the run's lineage
    (``export.lineage``) can follow it from any working directory."""
    d = to_dict(cfg)
    src = d.get("init", {}).get("checkpoint") or ""
    if src and not Path(src).is_absolute() and Path(src).exists():
        d["init"]["checkpoint"] = str(Path(src).resolve())
    return {**d, "layout": layout.to_dict()}


def read_checkpoint_config(folder: str | Path) -> tuple[RunConfig, VocabLayout]:
    """The run config and layout of a checkpoint or an exported model folder (missing
    fields take today's defaults; what an export adds is not part of the run config)."""
    from ..pipeline import EXPORT_KEYS
    from .checkpoint import read_config

    d = read_config(folder)
    for key in EXPORT_KEYS:
        d.pop(key, None)
    if "layout" not in d:
        raise UserError(f"{folder} has no layout in config.json; not a unif2ace model checkpoint")
    layout = VocabLayout.from_dict(d.pop("layout"))
    return from_dict(RunConfig, d), layout


def load_trained(folder: str | Path, ema: bool = False, device: str = "cpu"):
    """(model in eval mode, layout, RunConfig) from a checkpoint folder.

    ``ema``: load ``ema.safetensors`` (the averaged weights) instead of ``model.safetensors``.
    """
    from ..model import build_model
    from .checkpoint import EMA_FILE, MODEL_FILE, load_model_weights

    cfg, layout = read_checkpoint_config(folder)
    model = build_model(cfg.model, layout)
    load_model_weights(folder, model, file=EMA_FILE if ema else MODEL_FILE)
    return model.to(device).eval(), layout, cfg


def text_tokenizer_file(path: str | Path) -> Path:
    p = Path(path)
    p = p / "tokenizer.json" if p.is_dir() else p
    if not p.is_file():
        raise UserError(
            f"no tokenizer.json at {path}; train one with `unif2ace train text-tokenizer`"
        )
    return p


def tokenizer_copier(image_tokenizer: str | Path, text_tokenizer: str | Path):
    """``extra_files(folder)``: copy both tokenizers into a checkpoint folder."""
    img, txt = Path(image_tokenizer), text_tokenizer_file(text_tokenizer)

    def copy(folder: Path) -> None:
        shutil.copytree(img, folder / IMAGE_TOKENIZER_DIR, dirs_exist_ok=True)
        (folder / TEXT_TOKENIZER_DIR).mkdir(exist_ok=True)
        shutil.copy2(txt, folder / TEXT_TOKENIZER_DIR / "tokenizer.json")

    return copy


class SampleHook:
    """``on_sample(step, model, dir)``: prompts -> faces grid, and faces -> captions.

    Writes ``dir/step-N.png`` (row 1: the data's images, row 2: generated from their
    prompts) and ``dir/step-N.json`` (prompts, captions of the data's images).
    """

    def __init__(self, cfg: RunConfig, layout: VocabLayout, tokenizer, image_tokenizer, rows):
        self.cfg, self.layout, self.tok, self.ae = cfg, layout, tokenizer, image_tokenizer
        s = cfg.sampling
        self.prompts = list(s.prompts) or [
            (r.get("prompts") or [r.get("caption") or ""])[0] for r in rows
        ]
        self.prompts = self.prompts[: s.num_images]
        self.rows = rows[: s.num_images]

    def __call__(self, step: int, model, out_dir: Path) -> None:
        from ..diffusion.samplers import build_sampler
        from ..model import make_image_denoiser
        from ..tokenizer.images import save_grid
        from .distributed import get_rank

        s, layout, grid = self.cfg.sampling, self.layout, self.ae.config.grid
        prompt_ids = [self.tok.encode(p) for p in self.prompts]
        from .distributed import is_fsdp

        # FSDP2 rebuilds dataclass arguments of the root forward (input casting), so the
        # in-place prompt / KV caches would not persist: sample uncached there.
        self.cached = not is_fsdp(model)
        guided = s.sampler.guidance_scale > 0
        den = make_image_denoiser(
            model, layout, prompt_ids, use_cache=self.cached, with_uncond=guided
        )
        dev = model.embed_tokens.weight.device
        init = torch.full((len(prompt_ids), grid * grid), layout.codebook_size, device=dev)
        g = torch.Generator().manual_seed(s.seed)
        out = build_sampler(s.sampler)(
            den,
            init,
            mask_token=layout.codebook_size,
            codebook_size=layout.codebook_size,
            generator=g,
        )
        codes = out.codes_BN.cpu().view(-1, grid, grid)
        images = [self.ae.decode(codes)]
        captions: list[str] = []
        if self.rows:
            real = torch.stack([r["codes"] for r in self.rows])
            images.insert(0, self.ae.decode(real))
            if s.caption_tokens > 0:
                captions = self._captions(model, real.flatten(1))
        if get_rank() != 0:  # every rank samples (FSDP forwards are collective), one writes
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        save_grid(images, out_dir / f"step-{step:08d}.png")
        info = {"step": step, "prompts": self.prompts, "captions": captions}
        write_text_atomic(out_dir / f"step-{step:08d}.json", json.dumps(info, indent=2))

    def _captions(self, model, codes_BN) -> list[str]:
        from ..data.sequences import CAPTION_INSTRUCTION
        from ..model import generate_text
        from .distributed import is_fsdp
        from .task import encoder_image

        feats = None  # FSDP2: root weights are gathered only inside forward -> null features
        if self.cfg.data.encoder_images and len(model.encoders) and not is_fsdp(model):
            r = self.cfg.data.encoder_resolution
            imgs = torch.stack([encoder_image(x["image"], r) for x in self.rows])
            feats = model.encode_images(imgs.to(model.embed_tokens.weight.device))
        q = self.tok.encode(CAPTION_INSTRUCTION)
        gen = generate_text(
            model,
            self.layout,
            codes_BN.to(model.embed_tokens.weight.device),
            [q] * len(codes_BN),
            max_new_tokens=self.cfg.sampling.caption_tokens,
            encoder_feats=feats,
            use_cache=self.cached,
        )
        return [self.tok.decode(t) for t in gen.tokens]


def freeze_unused(model, encoder_images: bool) -> list[str]:
    """Set ``requires_grad=False`` on parameters this run can never update; returns names.

    The Noise expert always gets the noise level, so its learned null token is dead; with
    ``encoder_images`` every MMU row has encoder features (the semantic/face null tokens are
    dead), without them the encoders are. A parameter that never gets a gradient also never
    gets AdamW state, and the trainer's strict optimizer-state load then refuses the
    checkpoint; freezing changes nothing else (AdamW skips parameters without gradients).
    """
    names = []
    for name, p in model.named_parameters():
        null = name.endswith("null_feats")
        dead = null and (".t2i_" in name or encoder_images)
        dead = dead or (not encoder_images and name.startswith("encoders."))
        if dead:
            p.requires_grad_(False)
            names.append(name)
    return names


def init_encoders(model, cfg: RunConfig) -> None:
    """Put the trained, frozen encoders named in ``cfg.init`` into ``model`` (in place)."""
    from ..model.encoder_train import attach_trained_encoders

    sem, face = cfg.init.semantic_encoder or None, cfg.init.face_encoder or None
    if sem or face:
        attach_trained_encoders(model, semantic=sem, face=face)


def init_from_checkpoint(model, cfg: RunConfig, layout: VocabLayout) -> None:
    """Warm start: the weights of ``cfg.init.checkpoint`` (EMA ones by default) into
    ``model`` (in place); the model config must match, and the vocabulary layout too, or be
    the checkpoint's with the image codebook grown by ``n`` bits (``train tokenizer
    --grow-bits``): then see :func:`_grow_image_rows`."""
    from ..pipeline import _resolve_folder
    from .checkpoint import EMA_FILE, MODEL_FILE, load_model_weights

    if not cfg.init.checkpoint:
        return
    weights = cfg.init.checkpoint_weights
    if weights not in ("ema", "model", "ema-debiased"):
        raise UserError(
            f"init.checkpoint_weights must be ema, model or ema-debiased, got {weights!r}"
        )
    folder = _resolve_folder(Path(cfg.init.checkpoint))
    src_cfg, src_layout = read_checkpoint_config(folder)
    grown = src_layout != layout and layout.growth_bits(src_layout) is not None
    if src_layout != layout and not grown:
        raise UserError(
            f"init.checkpoint {str(folder)!r} has another vocabulary layout than this run "
            "(text or image tokenizer differ); warm-start from a model of the same tokenizers "
            "(or of the image tokenizer this run's grew from, `train tokenizer --grow-bits`)"
        )
    target = model
    if grown:  # the old model's shape, built without touching the run's random stream
        with torch.random.fork_rng(devices=[]):
            target = build_training_model(cfg.model, src_layout)
    ema = weights != "model" and (folder / EMA_FILE).is_file()
    load_model_weights(folder, target, file=EMA_FILE if ema else MODEL_FILE)
    if weights == "ema-debiased":  # a fixed-decay run's average without its random start
        with torch.no_grad():
            params = dict(target.named_parameters())
            for n, t in debiased_ema(folder).items():
                params[n].copy_(t)
    if grown:
        model.load_state_dict(_grow_image_rows(target.state_dict(), src_layout, layout))


def _grow_image_rows(
    state: dict[str, torch.Tensor], src: VocabLayout, layout: VocabLayout
) -> dict[str, torch.Tensor]:
    """A model state of layout ``src`` as one of ``layout``, whose codebook is ``src``'s grown
    by ``n`` bits: every vocabulary-sized tensor (token embeddings, output head) takes, for
    code ``c``, the row of ``src``'s code ``c >> n``, and the output bias of the image codes
    drops by ``n·ln 2``. The grown model then predicts for each old code the old
    probability, shared evenly by its ``2^n`` new codes, and reads each new code as its
    old one: where the grown tokenizer's high bits agree with the old codes, it starts where
    the old model stood, at ``n·ln 2`` more cross-entropy until it learns the new bits."""
    import math

    rows = layout.rows_from(src)
    n = layout.growth_bits(src)
    out = {}
    for name, t in state.items():
        if t.ndim >= 1 and t.shape[0] == src.size:
            t = t[rows].clone()
            if name.endswith("lm_head.bias"):
                t[layout.image_offset :] -= n * math.log(2)
        out[name] = t
    return out


def _sample_rows(cfg: RunConfig, codes: dict[str, torch.Tensor]) -> list[dict]:
    """The first records of the data split with their codes (fixed sample-grid inputs)."""
    from ..data.shards import iter_records

    cols = ["id", "image", "caption", "prompts"]
    rows = []
    for rec in iter_records(cfg.data.data, cfg.data.split, cols):
        rows.append({**rec, "codes": codes[rec["id"]]})
        if len(rows) >= cfg.sampling.num_images:
            break
    return rows


def prepare(cfg: RunConfig):
    """(layout, text tokenizer, image tokenizer, codes) of a run config's data section."""
    from ..tokenizer.autoencoder import LFQAutoencoder
    from ..tokenizer.pretokenize import load_codes
    from ..tokenizer.text import TextTokenizer

    d = cfg.data
    for name in ("data", "image_tokenizer", "text_tokenizer"):
        if not getattr(d, name):
            raise UserError(f"data.{name} is not set; pass --{name.replace('_', '-')} DIR")
    if not Path(d.data).is_dir():
        raise UserError(
            f"data folder {d.data!r} does not exist; build one with `unif2ace data build`"
        )
    tok = TextTokenizer.from_file(text_tokenizer_file(d.text_tokenizer))
    ae = LFQAutoencoder.from_pretrained(d.image_tokenizer)
    layout = VocabLayout(tok.vocab_size, ae.codebook_size)
    codes = load_codes(d.data, d.split, d.image_tokenizer)
    return layout, tok, ae, codes


def build_initial_model(cfg: RunConfig, layout: VocabLayout):
    """The model a run of ``cfg`` starts from: a function of the seed, the trained encoders
    and the warm-start checkpoint alone (so :func:`debiased_ema` can rebuild it)."""
    from .state import seed_all

    seed_all(cfg.train.seed)
    model = build_training_model(cfg.model, layout)
    init_encoders(model, cfg)
    init_from_checkpoint(model, cfg, layout)
    freeze_unused(model, cfg.data.encoder_images)
    return model


def debiased_ema(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """The EMA of a run made with a fixed decay d (``optim.ema_warmup=false``, every run
    before 2026-12-06) without its start: after n updates the average is
    ``d^n θ_0 + (1 - d) Σ_k d^(n-k) θ_k``, so ``(EMA - d^n θ_0) / (1 - d^n)`` weighs the
    trained weights alone. θ_0 is rebuilt with :func:`build_initial_model` (as
    :func:`train_model` builds it). At 2,400 steps of d = 0.999, θ_0 is 9 % of the raw EMA."""
    from .checkpoint import EMA_FILE, STATE_JSON, load_tensors, read_config
    from .state import capture_rng, restore_rng

    folder = Path(checkpoint)
    if not (folder / EMA_FILE).is_file():
        raise UserError(f"{str(folder)!r} has no {EMA_FILE}; nothing to de-bias")
    cfg, layout = read_checkpoint_config(folder)
    # a config without the field predates the warm-up: it averaged with the fixed decay
    if read_config(folder).get("train", {}).get("optim", {}).get("ema_warmup", False):
        raise UserError(
            f"{str(folder)!r} averaged with EMA warm-up (optim.ema_warmup), which already "
            "forgets the initial weights; export its EMA as it is (--weights ema)"
        )
    st = json.loads((folder / STATE_JSON).read_text())["state"]
    share = cfg.train.optim.ema_decay ** (st["step"] - st.get("skipped_steps", 0))
    rng = capture_rng()
    try:  # rebuilding re-seeds the global generators: leave the caller's as they were
        theta0 = dict(build_initial_model(cfg, layout).named_parameters())
    finally:
        restore_rng(rng)
    ema = load_tensors(folder / EMA_FILE)
    return {
        n: ((t.float() - share * theta0[n].detach().float()) / (1.0 - share)).to(t.dtype)
        for n, t in ema.items()
    }


def train_model(cfg: RunConfig, out_dir: str | Path, resume: str = "auto", verbose: bool = True):
    """Train the UniF²ace model of ``cfg`` into ``out_dir`` (resumable); returns TrainResult."""
    from .distributed import setup_distributed
    from .loop import Hooks, train

    info = setup_distributed(cfg.train.device)
    check_same_tokenizer(cfg, out_dir, resume)
    layout, tok, ae, codes = prepare(cfg)
    model = build_initial_model(cfg, layout)
    data = MixedTaskData(
        cfg.data,
        layout,
        tok,
        codes,
        cfg.train.micro_batch_size,
        cfg.train.seed,
        info.rank,
        info.world_size,
    )
    hooks = Hooks(extra_files=tokenizer_copier(cfg.data.image_tokenizer, cfg.data.text_tokenizer))
    if cfg.train.sample_every > 0:
        hooks.on_sample = SampleHook(cfg, layout, tok, ae, _sample_rows(cfg, codes))
    return train(
        cfg.train,
        model,
        make_step_fn(layout, cfg.loss),
        data,
        out_dir,
        resume=resume,
        run_config=checkpoint_config(cfg, layout),
        hooks=hooks,
        dist_info=info,
        verbose=verbose,
    )


def check_same_tokenizer(cfg: RunConfig, out_dir: str | Path, resume: str) -> None:
    """A resumed run must read the codes of the tokenizer it started with: the copy in its
    checkpoint and ``data.image_tokenizer`` must give the same codes (``tokenizer_hash``).
    Catches e.g. a run on ``bundled`` parts resumed after the bundled tokenizer changed."""
    from ..tokenizer.pretokenize import tokenizer_hash
    from .loop import resume_path

    ckpt = resume_path(resume, Path(out_dir))  # the trainer's own rule
    own = ckpt / IMAGE_TOKENIZER_DIR if ckpt is not None else None
    if own is None or not own.is_dir() or not cfg.data.image_tokenizer:
        return
    if tokenizer_hash(own) != tokenizer_hash(cfg.data.image_tokenizer):
        raise UserError(
            f"{cfg.data.image_tokenizer} encodes images differently from the tokenizer this run "
            f"started with ({own}); resume with that one (--tokenizer {own}) or start a new run"
        )


def memory_per_gpu_gb(
    n_params: int,
    world_size: int,
    micro_batch: int,
    seq_len: int,
    d_model: int,
    n_layers: int,
    n_heads: int,
    vocab_size: int,
    ema: bool = True,
    gathered_params: int = 0,
) -> dict[str, float]:
    """Per-GPU memory estimate (GiB) of FSDP2 training with bf16 compute.

    Sharded over ``world_size``: fp32 master weights (4 B/param), fp32 gradients (4), AdamW
    moments (8) and the EMA copy (4). Unsharded: the bf16 weights FSDP2 gathers at a time
    (``gathered_params``: the root's embedding + head plus two blocks with prefetch).
    Activations without recomputation (Korthikanti et al. 2022, Eq. 2): per layer
    ``s·b·h·(34 + 5·a·s/h)`` bytes; logits ``b·s·V`` in bf16 plus their fp32 loss copy and
    gradient (10 B per element).
    """
    per_param = 4 + 4 + 8 + (4 if ema else 0)
    states = n_params * per_param / world_size
    sbh = seq_len * micro_batch * d_model
    acts = n_layers * sbh * (34 + 5 * n_heads * seq_len / d_model)
    logits = micro_batch * seq_len * vocab_size * 10
    gib = 2**30
    out = {
        "sharded_states": states / gib,
        "gathered_bf16_weights": 2 * gathered_params / gib,
        "activations": acts / gib,
        "logits": logits / gib,
    }
    out["total"] = sum(out.values())
    return out
