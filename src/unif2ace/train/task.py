"""The UniF²ace training task: run config, mixed-task data and the loss of one micro-batch.

Shape legend: B rows of a micro-batch, T sequence length, V vocabulary, R generation rows,
N image positions per image, K codebook size, C/H/W image channels and pixels.

* :class:`RunConfig` composes the component configs (model, loss, data, train, sampling);
  ``config.load_yaml`` + dotted overrides build it from ``configs/<preset>.yaml``.
* :class:`MixedTaskData` is the trainer's ``data_factory``: shard records + cached codes ->
  micro-batches mixing generation (prompt dropout for guidance), captioning and VQA. Every
  random choice of a record (task, prompt, VQA pair, dropout) comes from a generator seeded
  by ``(seed, epoch, position in the epoch)``, so a resumed run rebuilds the identical
  batches and N ranks build the rows one process would.
* :func:`make_step_fn` gives ``step_fn(model, batch) -> (loss, metrics, n_tokens)``: corrupt
  the image codes of the generation rows (generator seeded by the batch's ``noise_seed``,
  itself a function of the data position), one forward over the mixed batch, and
  ``w_t2i·D3Diff + w_mmu·CE(text targets) + λ·balance`` (NOTES.md §2; Show-o Sec. 3.3).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..data.sequences import (
    CAPTION_INSTRUCTION,
    TokenSequence,
    build_caption,
    build_mmu_turns,
    build_t2i_with_dropout,
    collate,
    encode_answer,
)
from ..diffusion.corruption import CorruptionConfig, corrupt
from ..diffusion.losses import D3DiffConfig, d3diff_loss
from ..diffusion.samplers import SamplerConfig
from ..errors import UserError
from ..model.config import ModelConfig
from ..model.moe_sequence import off_copy_share
from ..model.transformer import UnifiedTransformer
from ..vocab import Modality, Task, VocabLayout
from .loop import TrainConfig

TASKS = ("t2i", "caption", "vqa")


@dataclass
class LossConfig:
    """Weights of the total loss ``w_t2i·L_D3Diff + w_mmu·L_mmu + balance·L_balance
    + seq_balance·L_seq_balance``.

    w_mmu = 1.0 (not Show-o's 0.1 "lm" weight): Show-o's 0.1 sits beside a separate
    language-modelling loss on text-only corpora; here the understanding loss is the only
    text loss and captioning/VQA is half the product, so both tasks weigh equally (the
    UniF²ace paper gives no weights). balance = 0.01: the load-balance coefficient of
    Switch/DeepSeekMoE-style routers (Fedus et al. 2021 use 0.01).
    """

    w_t2i: float = 1.0
    w_mmu: float = 1.0
    balance: float = 0.01
    # The sequence-level routers' balance loss (moe_sequence.sequence_balance). Without it a
    # layer that routes a group to Copy + Copy gets no router gradient and stays there: the
    # runs before it (bundled runs 1-6) routed understanding rows to Copy + Copy in 6 of 8
    # layers, so the encoder features entered in two layers only (docs/training.md).
    seq_balance: float = 0.01
    # Within the text loss: a multiplier per target token of a caption row and of a VQA row,
    # the sum divided by the number of targets (1, 1: the plain token mean). With
    # data.vqa_turns a VQA row carries ~8x the targets of one pair, so the captions' share of
    # the text loss shrinks; these set it back (or anywhere).
    w_caption: float = 1.0
    w_vqa: float = 1.0
    d3diff: D3DiffConfig = field(default_factory=D3DiffConfig)
    corruption: CorruptionConfig = field(default_factory=CorruptionConfig)


@dataclass
class DataConfig:
    """Where the data and tokenizers are, and how records become sequences."""

    data: str = ""  # data set folder (DIR/<split>/shard-*.parquet + codes-<hash>/)
    image_tokenizer: str = ""  # LFQ autoencoder folder (save_pretrained layout)
    text_tokenizer: str = ""  # folder holding tokenizer.json (or the file)
    split: str = "train"
    t2i: float = 0.5  # task mix: fractions of rows (normalised)
    caption: float = 0.25
    vqa: float = 0.25
    prompt_dropout: float = 0.1  # empty prompt for classifier-free guidance (Show-o: 0.1)
    max_text_len: int = 96  # cap of "bos question answer eos" and of "<|t2i|> bos prompt eos"
    encoder_images: bool = True  # feed MMU images to the semantic / face encoders
    encoder_resolution: int = 64  # pixels of the encoder inputs
    # Fraction of understanding rows whose encoder image is blanked (uniform grey): those rows
    # must answer from the image codes. Without it the bundled model learnt to answer from the
    # encoder features alone (benchmarks/vqa_image_reliance.py; docs/training.md, "What the
    # understanding rows read"). Inference always gives the encoders the image.
    encoder_dropout: float = 0.0
    # How a record's VQA pair is picked. 0: uniformly. 1: weighted so that every question's
    # answers are equally likely over the split (the answer-prior remedy of VQA v2, Goyal et
    # al. 2017: a model cannot score by answering "No" without looking). Between: the power
    # of those weights. See VQABalance.
    vqa_balance: float = 0.0
    # How vqa_balance acts. "sample": it picks which pairs are asked (acts only when a record
    # has more pairs than vqa_turns). "loss": pairs are picked uniformly and each answer's
    # cross-entropy (its tokens and closing eos) is multiplied by its pair's weight, so it
    # balances every question's answers however many turns a row asks (a question's weights
    # average 1 over its pairs before clipping, so the VQA loss keeps its scale).
    vqa_balance_by: str = "sample"
    # VQA pairs of one record per VQA example, as the turns of one conversation about the
    # image (build_mmu_turns): the image is read once for up to this many answers. 1: one pair
    # per example (the single-turn layout inference uses). With vqa_balance the turns are
    # drawn by its weights without replacement, so it balances only below the pairs per record.
    vqa_turns: int = 1
    # Fresh VQA pairs on every visit (FaceForge records, which carry their labels). 0: the
    # record's stored pairs (~8, fixed at build time). N > 0: each VQA row writes N pairs
    # from the face's labels with FaceForge's own generator (data.faceforge.vqa.make_vqa,
    # seeded by the row's generator) and asks vqa_turns of them, drawn by vqa_balance's
    # weights when set — a pool large enough for the balance to draw rare answers (a hat's
    # "Yes") far more often than the stored 8 pairs can.
    vqa_pool: int = 0
    # With vqa_pool: 0 asks the pool instead of the stored pairs (above). K > 0 keeps the
    # stored pairs and their question mix (vqa_turns of them, as without a pool) and adds K
    # turns from the fresh pool (by vqa_balance's weights when set; pairs about an attribute
    # the stored turns already ask are left out), shuffled into one conversation. Turns past
    # max_text_len are dropped: 8 stored turns take ~90 tokens, so the small preset's 160
    # leaves room for ~5 more.
    vqa_pool_turns: int = 0
    # Share of generation rows whose text is the record's caption instead of one of its
    # prompts. A FaceForge caption words every visible attribute; a prompt names a few (a
    # hat is in 43 % of the prompts of the faces wearing one), so the words for
    # local attributes reach the generator far more often (docs/training.md, "What the
    # generator listens to"). 0 draws exactly what earlier runs drew.
    t2i_caption: float = 0.0

    def task_probs(self) -> np.ndarray:
        p = np.array([self.t2i, self.caption, self.vqa], dtype=np.float64)
        if (p < 0).any() or p.sum() <= 0:
            raise UserError(f"data.t2i/caption/vqa must be >= 0 with a positive sum, got {p}")
        if not 0.0 <= self.vqa_balance <= 1.0:
            raise UserError(f"data.vqa_balance must be in [0, 1], got {self.vqa_balance}")
        if self.vqa_balance_by not in ("sample", "loss"):
            raise UserError(
                f"data.vqa_balance_by must be 'sample' or 'loss', got {self.vqa_balance_by!r}"
            )
        if self.vqa_turns < 1:
            raise UserError(f"data.vqa_turns must be >= 1, got {self.vqa_turns}")
        if self.vqa_pool < 0:
            raise UserError(f"data.vqa_pool must be >= 0, got {self.vqa_pool}")
        if self.vqa_pool_turns < 0:
            raise UserError(f"data.vqa_pool_turns must be >= 0, got {self.vqa_pool_turns}")
        if self.vqa_pool_turns > 0 and self.vqa_pool == 0:
            raise UserError("data.vqa_pool_turns needs data.vqa_pool > 0 (the pool it asks from)")
        if not 0.0 <= self.encoder_dropout <= 1.0:
            raise UserError(f"data.encoder_dropout must be in [0, 1], got {self.encoder_dropout}")
        if not 0.0 <= self.t2i_caption <= 1.0:
            raise UserError(f"data.t2i_caption must be in [0, 1], got {self.t2i_caption}")
        return p / p.sum()


@dataclass
class SamplingConfig:
    """What the periodic sample hook draws and writes (``OUT/samples/step-N.png``)."""

    sampler: SamplerConfig = field(
        default_factory=lambda: SamplerConfig(guidance_scale=2.0, temperature=1.0)
    )
    prompts: list[str] = field(default_factory=list)  # empty: prompts of the first records
    num_images: int = 4
    seed: int = 0
    caption_tokens: int = 48  # caption the data's first images (0: no captions)


@dataclass
class InitConfig:
    """Trained parts a run starts from (read again on resume, where the checkpoint's values
    of the same weights win). Empty: trained jointly from scratch."""

    semantic_encoder: str = ""  # folder of `unif2ace train encoders` (semantic); frozen
    face_encoder: str = ""  # folder of `unif2ace train encoders` (identity); frozen
    # A trained model checkpoint (or run folder) whose weights start this run (warm start:
    # new optimizer, schedule and data order); its vocabulary layout must equal this run's.
    checkpoint: str = ""
    # "ema" (when the checkpoint has them), "model", or "ema-debiased" (a run averaged with a
    # fixed decay, before 2026-12-06: its EMA without the random init; train.unified)
    checkpoint_weights: str = "ema"


@dataclass
class RunConfig:
    """The whole run (saved as ``config.json`` in every checkpoint, with ``layout``)."""

    preset: str = "small"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    init: InitConfig = field(default_factory=InitConfig)


# --- data ----------------------------------------------------------------------------------
def record_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of one record's choices: a pure function of its position ``index`` in
    the epoch's global order (the same whatever the number of ranks)."""
    s = np.random.SeedSequence([seed, epoch, index, 0xDA7A]).generate_state(2)
    return torch.Generator().manual_seed(int(s[0]) << 32 | int(s[1]))


class VQABalance:
    """Weights that pick a record's VQA pair so each question's answers come out (nearly)
    equally often over a split.

    A question is its attribute (FaceForge's ``attribute`` field; the normalised question text
    when it has none); an answer is its normalised text, every "I can't tell …" being one.
    With ``p(a | q)`` the split's answer frequencies and ``m_q`` the number of answers ``q``
    has, a pair weighs ``(1 / (m_q · p(a | q)))^alpha``, clipped to ``[1/cap, cap]`` so a
    handful of rare answers cannot take over the understanding batches. A record's pair is
    drawn with probability proportional to its weight.
    """

    CAP = 5.0

    def __init__(self, counts: dict[tuple[str, str], int], alpha: float = 1.0):
        if not counts:
            raise UserError("data.vqa_balance needs VQA pairs in the training split; it has none")
        totals: dict[str, int] = {}
        classes: dict[str, int] = {}
        for (q, _), n in counts.items():
            totals[q] = totals.get(q, 0) + n
            classes[q] = classes.get(q, 0) + 1
        self.alpha = float(alpha)
        self.weight: dict[tuple[str, str], float] = {
            (q, a): float(np.clip((totals[q] / (classes[q] * n)) ** alpha, 1 / self.CAP, self.CAP))
            for (q, a), n in counts.items()
        }

    @staticmethod
    def key(qa: dict) -> tuple[str, str]:
        """(question, answer) class of one VQA pair."""
        from ..eval.metrics.vqa import CANT_TELL, is_cant_tell, normalize_answer

        q = qa.get("attribute") or normalize_answer(qa["question"])
        a = CANT_TELL if is_cant_tell(qa["answer"]) else normalize_answer(qa["answer"])
        return q, a

    @classmethod
    def from_records(cls, records, alpha: float = 1.0) -> VQABalance:
        """Count the answer classes of every VQA pair of ``records`` (dicts with ``vqa``)."""
        counts: dict[tuple[str, str], int] = {}
        for rec in records:
            for qa in rec.get("vqa") or []:
                k = cls.key(qa)
                counts[k] = counts.get(k, 0) + 1
        return cls(counts, alpha)

    def weights(self, vqa: list[dict]) -> torch.Tensor:
        """Sampling weights of a record's pairs (1 for a class the split never showed)."""
        return torch.tensor([self.weight.get(self.key(qa), 1.0) for qa in vqa], dtype=torch.float64)


def fresh_vqa(record: dict, n: int, rng: np.random.Generator) -> list[dict]:
    """``n`` VQA pairs about a FaceForge record's face, from its labels (``data.vqa_pool``)."""
    from ..data.faceforge.vqa import make_vqa
    from ..data.shards import labels_of

    labels = labels_of(record) if record.get("attributes") else {}
    if not labels:
        raise UserError(
            f"data.vqa_pool needs records with attribute labels (FaceForge); "
            f"{record.get('id', 'a record')!r} has none"
        )
    return make_vqa(labels, rng, n=n)


def pool_rng(g: torch.Generator) -> np.random.Generator:
    """The numpy generator of one row's fresh VQA pool, drawn from the row's generator."""
    return np.random.default_rng(int(torch.randint(2**62, (), generator=g)))


def record_to_sequence(
    cfg: DataConfig,
    layout: VocabLayout,
    tokenizer,
    record: dict,
    codes: torch.Tensor,
    g: torch.Generator,
    vqa_balance: VQABalance | None = None,
) -> tuple[str, TokenSequence]:
    """One record as a generation, captioning or VQA example: (the task of :data:`TASKS` it
    became, its sequence). The task is drawn from ``g`` (a VQA draw on a record without VQA
    pairs becomes a caption); the VQA pair uniformly, or by ``vqa_balance``'s weights
    (``cfg.vqa_balance_by == "loss"``: uniformly, the weights going on the answers' loss);
    ``cfg.vqa_turns`` pairs as one conversation."""
    probs = torch.as_tensor(cfg.task_probs())
    task = TASKS[int(torch.multinomial(probs, 1, generator=g))]
    if task == "t2i":
        texts = [p for p in (record.get("prompts") or []) if p] or [record.get("caption") or ""]
        text = texts[int(torch.randint(len(texts), (), generator=g))]
        # drawn only when asked for, so that t2i_caption = 0 leaves the random stream as it was
        if cfg.t2i_caption > 0 and record.get("caption"):
            if float(torch.rand((), generator=g)) < cfg.t2i_caption:
                text = record["caption"]
        prompt = tokenizer.encode(text)[: max(cfg.max_text_len - 3, 0)]
        return task, build_t2i_with_dropout(layout, prompt, codes, cfg.prompt_dropout, g)
    vqa = record.get("vqa") or []
    pool: list[dict] = []
    if task == "vqa" and cfg.vqa_pool > 0:
        pool = fresh_vqa(record, cfg.vqa_pool, pool_rng(g))
        if cfg.vqa_pool_turns == 0:
            vqa, pool = pool, []
    if task == "caption" or not (vqa or pool):
        caption = tokenizer.encode(record.get("caption") or "")
        instruction = tokenizer.encode(CAPTION_INSTRUCTION)
        return "caption", build_caption(layout, codes, caption, instruction, cfg.max_text_len)
    by_loss = vqa_balance is not None and cfg.vqa_balance_by == "loss"
    sampler = None if by_loss else vqa_balance
    asked = [vqa[i] for i in _pick_pairs(vqa, cfg.vqa_turns, sampler, g)] if vqa else []
    if pool:  # vqa_pool_turns: the stored turns plus fresh ones about other attributes
        seen = {VQABalance.key(qa)[0] for qa in asked}
        pool = [qa for qa in pool if VQABalance.key(qa)[0] not in seen]
        asked += (
            [pool[i] for i in _pick_pairs(pool, cfg.vqa_pool_turns, sampler, g)] if pool else []
        )
        asked = [asked[i] for i in torch.randperm(len(asked), generator=g).tolist()]
    turns = [
        (tokenizer.encode(qa["question"]), encode_answer(tokenizer, qa["answer"])) for qa in asked
    ]
    weights = vqa_balance.weights(asked).tolist() if by_loss else None
    return task, build_mmu_turns(layout, codes, turns, cfg.max_text_len, weights)


def _pick_pairs(
    vqa: list[dict], n: int, sampler: VQABalance | None, g: torch.Generator
) -> list[int]:
    """Indices of ``n`` of ``vqa``'s pairs (all when fewer), uniformly or by ``sampler``'s
    weights, without replacement."""
    if n > 1:
        w = sampler.weights(vqa) if sampler is not None else torch.ones(len(vqa))
        return torch.multinomial(w, min(n, len(vqa)), generator=g).tolist()
    if sampler is None:
        return [int(torch.randint(len(vqa), (), generator=g))]
    return [int(torch.multinomial(sampler.weights(vqa), 1, generator=g))]


def encoder_image(png: bytes, resolution: int) -> torch.Tensor:
    """PNG bytes -> ``(3, R, R)`` float in [0, 1] (the encoders' input convention)."""
    from ..tokenizer.images import png_to_tensor

    return (png_to_tensor(png, resolution) + 1.0) / 2.0


class MixedTaskData:
    """``data_factory(epoch, start)`` of mixed-task micro-batches for :func:`train.loop.train`.

    Records come from a :class:`~unif2ace.data.dataset.FaceShardDataset` (seeded block
    shuffle per epoch, split over ranks); codes from the pretokenised cache. A batch is a dict:
    ``ids_BT, modality_BT, loss_mask_BT, image_mask_BT, task_B, prompt_dropped_B``,
    ``noise_seed`` (int64 scalar), with ``encoder_images`` ``images_BCHW`` (zeros on
    generation rows, which do not use the encoders), and with answers balanced by loss
    (``vqa_balance_by="loss"``) ``loss_weight_BT``.
    """

    def __init__(
        self,
        cfg: DataConfig,
        layout: VocabLayout,
        tokenizer,
        codes: dict[str, torch.Tensor],
        micro_batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        from ..data.dataset import FaceShardDataset

        cfg.task_probs()  # validate now
        cols = ["id", "caption", "prompts", "vqa"] + (["image"] if cfg.encoder_images else [])
        cols += ["attributes"] if cfg.vqa_pool > 0 else []
        self.dataset = FaceShardDataset(
            cfg.data, cfg.split, cols, shuffle=True, seed=seed, rank=rank, world_size=world_size
        )
        self.cfg, self.layout, self.tokenizer, self.codes = cfg, layout, tokenizer, codes
        self.micro, self.seed, self.rank, self.world = micro_batch_size, seed, rank, world_size
        self.vqa_balance = None
        if cfg.vqa_balance > 0 and cfg.vqa > 0:
            from ..data.shards import iter_records

            if cfg.vqa_pool > 0:  # the answer frequencies of the pools training will draw
                records = (
                    {"vqa": fresh_vqa(r, cfg.vqa_pool, np.random.default_rng([seed, i, 0x9001]))}
                    for i, r in enumerate(iter_records(cfg.data, cfg.split, ["id", "attributes"]))
                )
            else:
                records = iter_records(cfg.data, cfg.split, ["vqa"])
            self.vqa_balance = VQABalance.from_records(records, cfg.vqa_balance)

    def __call__(self, epoch: int, start: int) -> Iterator[dict]:
        self.dataset.set_epoch(epoch)
        chunk: list[dict] = []
        n_batch = 0
        for rec in self.dataset:
            chunk.append(rec)
            if len(chunk) < self.micro:
                continue
            if n_batch >= start:  # skipped batches are read but not built
                yield self._batch(chunk, epoch, n_batch)
            chunk, n_batch = [], n_batch + 1

    def _batch(self, records: list[dict], epoch: int, n_batch: int) -> dict:
        seqs, kinds, images = [], [], []
        for j, rec in enumerate(records):
            codes = self.codes.get(rec["id"])
            if codes is None:
                raise UserError(
                    f"record {rec['id']!r} has no cached codes; rerun `unif2ace data "
                    "pretokenize` with the same --tokenizer"
                )
            # FaceShardDataset gives this rank positions rank, rank + world, ... of the epoch
            pos = (n_batch * self.micro + j) * self.world + self.rank
            g = record_generator(self.seed, epoch, pos)
            kind, seq = record_to_sequence(
                self.cfg, self.layout, self.tokenizer, rec, codes, g, self.vqa_balance
            )
            seqs.append(seq)
            kinds.append(TASKS.index(kind))
            if self.cfg.encoder_images:
                r = self.cfg.encoder_resolution
                mmu = seq.task == Task.MMU
                p = self.cfg.encoder_dropout  # drawn after the sequence: p = 0 leaves g as it was
                if mmu and p > 0 and float(torch.rand((), generator=g)) < p:
                    images.append(torch.full((3, r, r), 0.5))
                else:
                    images.append(encoder_image(rec["image"], r) if mmu else torch.zeros(3, r, r))
        b = collate(seqs, self.layout)
        s = np.random.SeedSequence([self.seed, epoch, self.rank, n_batch, 0x0015E])
        batch = {
            "ids_BT": b.input_ids_BT,
            "modality_BT": b.modality_BT,
            "loss_mask_BT": b.loss_mask_BT,
            "image_mask_BT": b.image_mask_BT,
            "task_B": b.task_B,
            "kind_B": torch.tensor(kinds, dtype=torch.long),
            "prompt_dropped_B": b.prompt_dropped_B,
            "noise_seed": torch.tensor(int(s.generate_state(1, np.uint64)[0] >> np.uint64(1))),
        }
        if images:
            batch["images_BCHW"] = torch.stack(images)
        if self.vqa_balance is not None and self.cfg.vqa_balance_by == "loss":
            batch["loss_weight_BT"] = b.loss_weight_BT
        return batch


# --- loss ----------------------------------------------------------------------------------
@dataclass
class UnifiedLoss:
    """Every component of one micro-batch's loss (scalars; absent tasks are None)."""

    loss: torch.Tensor
    t2i: torch.Tensor | None
    mmu: torch.Tensor | None
    balance: torch.Tensor
    metrics: dict[str, float]
    n_tokens: int
    seq_balance: torch.Tensor | None = None


def corrupt_t2i(batch: dict, layout: VocabLayout, cfg: CorruptionConfig):
    """Mask the codes of the generation rows. Returns (ids_BT, corruption or None,
    codes_RN, img_BT, noise_level_B): ``img_BT`` marks generation-row image positions."""
    ids, task = batch["ids_BT"], batch["task_B"]
    img_BT = batch["image_mask_BT"] & (task == int(Task.T2I))[:, None]
    R = int((task == int(Task.T2I)).sum())
    noise_B = torch.zeros(ids.shape[0], device=ids.device)
    if R == 0:
        return ids, None, None, img_BT, noise_B
    codes_RN = layout.ids_to_codes(ids[img_BT]).view(R, -1)
    g = torch.Generator().manual_seed(int(batch["noise_seed"]))
    corr = corrupt(
        codes_RN,
        mask_token=layout.codebook_size,
        schedule=cfg.schedule,
        generator=g,
        method=cfg.method,
        low_discrepancy=cfg.low_discrepancy,
        t_min=cfg.t_min,
    )
    noisy = torch.where(
        corr.mask_BN, torch.full_like(codes_RN, layout.mask_id), ids[img_BT].view(R, -1)
    )
    ids = ids.masked_scatter(img_BT, noisy)
    noise_B = noise_B.masked_scatter(task == int(Task.T2I), corr.noise_level_B.to(ids.device))
    return ids, corr, codes_RN, img_BT, noise_B


def encoder_features(model, images_BCHW, task_B) -> dict[str, torch.Tensor] | None:
    """Encoder features of the understanding rows (zeros elsewhere; unused by T2I rows)."""
    if images_BCHW is None or not len(getattr(model, "encoders", {})):
        return None
    mmu = (task_B == int(Task.MMU)).nonzero().squeeze(1)
    if mmu.numel() == 0:
        return None
    feats = model.encode_images(images_BCHW[mmu])
    B = images_BCHW.shape[0]
    return {k: f.new_zeros((B, *f.shape[1:])).index_copy(0, mmu, f) for k, f in feats.items()}


def zero_touch(params) -> torch.Tensor:
    """``0 · Σ p[0]`` over trainable ``params``: each gets a (zero) gradient from it."""
    parts = [p.reshape(-1)[:1].sum().float() for p in params if p.requires_grad]
    return 0.0 * torch.stack(parts).sum() if parts else torch.zeros(())


def _touch_block(block, inputs, output):
    h, *rest = output
    return (h + zero_touch(block.parameters()).to(h.dtype), *rest)


class TrainingTransformer(UnifiedTransformer):
    """The network for training: image encoders run *inside* ``forward`` (``images_BCHW=``)
    and every trainable parameter gets a gradient in every step.

    Same parameters and state-dict names as :class:`UnifiedTransformer` (checkpoints load
    into either). Why: under FSDP2 the encoders belong to the root unit, whose weights are
    gathered only inside the root's forward, and DDP expects every gradient to come from its
    forward. Sparse routing leaves some experts (token- and sequence-level) and, on a rank
    without understanding rows, the encoders without a gradient; FSDP2's reduce-scatter then
    differs between ranks (a collective mismatch) and AdamW would keep no state for them (an
    incomplete checkpoint). A ``0 · Σ p[0]`` term per block (a forward hook, registered
    before FSDP's own so the block's weights are still gathered) and for the root's weights
    gives them a zero gradient, as a dense all-reduce would. Build with
    :func:`build_training_model`.
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int, mask_id: int):
        super().__init__(cfg, vocab_size, mask_id)
        for block in self.layers:
            block.register_forward_hook(_touch_block)

    def forward(self, ids_BT, modality_BT, task_B, noise_level_B=None, encoder_feats=None,
                images_BCHW=None, **kw):  # fmt: skip
        if encoder_feats is None:
            encoder_feats = encoder_features(self, images_BCHW, task_B)
        out = super().forward(ids_BT, modality_BT, task_B, noise_level_B, encoder_feats, **kw)
        root = (p for n, p in self.named_parameters() if not n.startswith("layers."))
        out.logits_BTV = out.logits_BTV + zero_touch(root).to(out.logits_BTV.dtype)
        return out


def build_training_model(cfg: ModelConfig, layout: VocabLayout) -> TrainingTransformer:
    """:func:`unif2ace.model.build_model` with encoders inside the forward (same weights)."""
    return TrainingTransformer(cfg, layout.size, layout.mask_id)


def unified_loss(model, batch: dict, layout: VocabLayout, cfg: LossConfig) -> UnifiedLoss:
    """One forward over a mixed batch and the weighted loss (module docstring)."""
    from .distributed import unwrap

    ids_in, corr, codes_RN, img_BT, noise_B = corrupt_t2i(batch, layout, cfg.corruption)
    images, task = batch.get("images_BCHW"), batch["task_B"]
    if isinstance(unwrap(model), TrainingTransformer):
        out = model(ids_in, batch["modality_BT"], task, noise_B, images_BCHW=images)
    else:
        feats = encoder_features(unwrap(model), images, task)
        out = model(ids_in, batch["modality_BT"], task, noise_B, encoder_feats=feats)
    logits = out.logits_BTV
    total = cfg.balance * out.balance_loss.float() + cfg.seq_balance * out.seq_balance_loss
    metrics = {
        "balance": float(out.balance_loss.detach()),
        "seq_balance": float(out.seq_balance_loss.detach()),
    }
    if out.router.seq_weights_LBQ is not None:
        for name, v in off_copy_share(out.router.seq_weights_LBQ.detach(), task).items():
            metrics[f"seq_off_copy_{name}"] = v
    t2i = mmu = None
    if corr is not None:
        lo = layout.image_offset
        logits_RNK = logits[img_BT].view(*codes_RN.shape, -1)[..., lo : lo + layout.codebook_size]
        d = d3diff_loss(
            logits_RNK,
            codes_RN,
            corr.mask_BN,
            corr.mask_ratio_B,
            corr.mask_ratio_rate_B,
            **vars(cfg.d3diff),
        )
        t2i = d.loss
        total = total + cfg.w_t2i * t2i
        metrics.update(
            t2i=float(d.loss.detach()),
            mask=float(d.mask_loss.detach()),
            score=float(d.score_loss.detach()),
            mask_acc=float(d.mask_accuracy),
        )
    tgt_BT = batch["loss_mask_BT"][:, 1:] & (batch["task_B"] == int(Task.MMU))[:, None]
    if bool(tgt_BT.any()):
        pred = logits[:, :-1][tgt_BT].float()
        target = batch["ids_BT"][:, 1:][tgt_BT]
        ce = F.cross_entropy(pred, target, reduction="none")
        mmu = ce.mean()
        metrics.update(mmu=float(mmu.detach()))  # logged unweighted, comparable across runs
        weight = None
        if "loss_weight_BT" in batch:  # answers balanced by loss (data.vqa_balance_by)
            weight = batch["loss_weight_BT"][:, 1:][tgt_BT].to(ce.dtype)
        kind_B = batch.get("kind_B")
        if kind_B is not None:  # per-token weights by the row's task; metrics per task
            kind = kind_B[:, None].expand_as(tgt_BT)[tgt_BT]
            w = {"caption": cfg.w_caption, "vqa": cfg.w_vqa}
            for name, v in w.items():
                sel = kind == TASKS.index(name)
                if v != 1.0:
                    weight = torch.ones_like(ce) if weight is None else weight
                    weight = weight * torch.where(sel, v, 1.0)
                if bool(sel.any()):
                    metrics[f"mmu_{name}"] = float(ce.detach()[sel].mean())
        if weight is not None:
            mmu = (weight * ce).sum() / ce.numel()
        total = total + cfg.w_mmu * mmu
        with torch.no_grad():
            acc = (pred.argmax(-1) == target).float().mean()
        metrics.update(text_acc=float(acc))
    n_tokens = int((batch["modality_BT"] != int(Modality.PAD)).sum())
    return UnifiedLoss(total, t2i, mmu, out.balance_loss, metrics, n_tokens, out.seq_balance_loss)


def make_step_fn(layout: VocabLayout, cfg: LossConfig):
    """``step_fn(model, batch) -> (loss, metrics, n_tokens)`` for :func:`train.loop.train`."""

    def step_fn(model, batch):
        res = unified_loss(model, batch, layout, cfg)
        return res.loss, res.metrics, res.n_tokens

    return step_fn
