"""Evaluate a unif2ace model on FaceForge: generation and understanding (issue 6).

Generation, on the first ``num`` records of each split (``test`` and ``test_heldout``):

* **attribute fidelity**: the judge's accuracy on the attributes each prompt asks for
  (``parse_prompt`` of the record's first prompt), on the generated face; the same judge on
  the real face of the record is the ceiling (FaceForge prompts are true of their images).
* **VQAScore** (Lin et al. 2024): the model's own probability of the right yes/no answer to
  a question about each prompted attribute of its generated face.
* **FID** in the judge's penultimate feature space, generated vs real ``split`` faces, beside
  the real-vs-real floor (``val`` vs ``split``, same sample sizes); **KID** (unbiased kernel
  distance, :mod:`.metrics.kid`) in the same space, against the same real faces, with the
  same floor.
* **diversity**: mean pairwise cosine distance of judge features of several samples per
  prompt, and across prompts.

Understanding, on the same records: caption attribute precision / recall / F1 (against the
reference caption and against all visible labels), BLEU-4 and CIDEr-D against the reference
caption, VQA accuracy by category, kind and answer type.

Each split keeps what every evaluated face contributed (``units``, :mod:`.intervals`), so each
headline number but FID and the prompt gap has a 95 % percentile-bootstrap interval over the
faces (the top-level ``ci95`` table, which the report and the model card print), and two
evaluations of the same faces compare paired (``unif2ace eval-compare``). The intervals say
how far a number moves with the choice of faces alone, not the seed-to-seed spread of
training. CIDEr-D's resamples keep the whole corpus' document frequencies; KID's resample the
generated faces against the fixed real reference.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

from ..data.ontology import BY_NAME, hidden_attributes
from ..errors import UserError
from .intervals import intervals


@dataclass
class EvalConfig:
    """What ``unif2ace eval`` measures and how much.

    Attributes:
        splits: splits to generate for (prompts) and to describe (faces).
        num: records per split.
        fid_real: real faces of the split for the FID statistics (and of ``val`` for the
            floor).
        diversity_prompts / diversity_samples: prompts x samples for the diversity score.
        steps / guidance: sampler overrides (None: the model's defaults).
        seed: sampling seed.
        batch_size: rows per sampler / decoder batch.
        understanding: also caption and answer (off: generation only).
        llm_faces: faces per split whose captions and answers the LLM judge scores, when
            an LLM backend is given (None: all ``num``).
    """

    splits: tuple[str, ...] = ("test", "test_heldout")
    num: int = 200
    fid_real: int = 1000
    diversity_prompts: int = 16
    diversity_samples: int = 4
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    batch_size: int = 16
    understanding: bool = True
    llm_faces: int | None = None


def load_records(data: str, split: str, num: int, columns: Sequence[str]) -> list[dict]:
    """The first ``num`` records of ``split`` (UserError when the split is missing/empty)."""
    from ..data.shards import iter_records, labels_of

    out = []
    for rec in iter_records(data, split, list(columns)):
        if "attributes" in rec:
            rec["labels"] = labels_of(rec)
        out.append(rec)
        if len(out) >= num:
            break
    if not out:
        raise UserError(f"split {split!r} of {data!r} is empty or missing; build the data first")
    return out


def to_uint8(images: Sequence[Image.Image]) -> torch.Tensor:
    """PIL images -> uint8 ``(N, 3, H, W)``."""
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


# --- prompted attributes and their yes/no questions --------------------------------------
def prompted_attributes(prompt: str) -> dict:
    """Attributes a prompt asks for (``parse_prompt``), minus those its own requests hide
    (a prompt asking for sunglasses and blue eyes cannot be judged on the eyes)."""
    from ..data.caption_parser import parse_prompt

    asked = parse_prompt(prompt)
    return {a: v for a, v in asked.items() if a not in hidden_attributes(asked)}


def yes_no_question(attr: str, value, gender: str | None) -> tuple[str, str]:
    """A yes/no question about ``attr`` having ``value`` and its right answer."""
    from ..data.faceforge.vqa import BINARY_Q, CATEGORICAL_Q, answer_word

    s, p = {"male": ("he", "his"), "female": ("she", "her")}.get(gender or "", ("they", "their"))
    if BY_NAME[attr].is_binary:
        q = BINARY_Q[attr][0].format(s=s, p=p)
        if s == "they":
            q = q.replace("Is they", "Are they").replace("Does they", "Do they")
        return q[0].upper() + q[1:], "Yes" if value else "No"
    if attr == "gender":
        return f"Is this {answer_word(attr, value)}?", "Yes"
    q = CATEGORICAL_Q[attr][1].format(s=s, p=p, v=answer_word(attr, value))
    if s == "they":
        q = q.replace("Is they", "Are they").replace("Does they", "Do they")
    return q[0].upper() + q[1:], "Yes"


def decoding(pipe, cfg: EvalConfig) -> dict:
    """What the numbers were measured with beyond ``cfg``: the image sampler after the eval's
    overrides and the text-decoding defaults (greedy unless a temperature; the repetition
    rule) — two evaluations that differ only here differ in these, not in the model."""
    s = pipe.sampling
    text = {"temperature": s.text_temperature, "top_k": s.text_top_k, "top_p": s.text_top_p,
            "no_repeat_ngram": s.no_repeat_ngram, "caption_max_tokens": s.max_text_len,
            "answer_max_tokens": s.answer_max_new_tokens}  # fmt: skip
    return {"image_sampler": asdict(pipe.sampler_config(**_sampler_overrides(cfg))), "text": text}


# --- generation ----------------------------------------------------------------------------
def _sampler_overrides(cfg: EvalConfig) -> dict:
    """``--steps`` / ``--guidance`` as sampler fields (None: the model's default)."""
    return {"num_steps": cfg.steps or None, "guidance_scale": cfg.guidance}


def _generate(pipe, prompts: list[str], cfg: EvalConfig, seed: int) -> list[Image.Image]:
    over = _sampler_overrides(cfg)
    return pipe.generate(prompts, seed=seed, batch_size=cfg.batch_size, **over)


def fidelity(judge, images_u8: torch.Tensor, asked: list[dict]) -> dict:
    """Judge accuracy on the prompted attributes (``attribute_accuracy`` with the prompted
    values as labels); attributes no prompt asks for are left out."""
    from .judge import attribute_accuracy, predict

    pred = predict(judge, images_u8)
    names = sorted({a for d in asked for a in d})
    res = attribute_accuracy(pred, asked, attributes=names, per_image=True)
    return {
        "accuracy": res["overall"],
        "n": res["n"],
        "per_attribute": res["per_attribute"],
        "per_image": res["per_image"],  # [right, scored] of each face: the units
    }


def vqa_score(pipe, images: list[Image.Image], asked: list[dict], cfg: EvalConfig) -> dict:
    """Mean probability the model gives the right yes/no answer about each prompted attribute
    of its own generated face (per attribute and overall; ``per_image``: [sum, count] of
    each face)."""
    rows, qs, ans, attrs, owner = [], [], [], [], []
    for i, (img, d) in enumerate(zip(images, asked, strict=True)):
        for a, v in d.items():
            q, y = yes_no_question(a, v, d.get("gender"))
            rows.append(img)
            qs.append(q)
            ans.append(y)
            attrs.append(a)
            owner.append(i)
    if not rows:
        empty = [[0.0, 0] for _ in images]
        return {"score": math.nan, "n": 0, "per_attribute": {}, "per_image": empty}
    probs = pipe.answer_probability(rows, qs, ans, batch_size=cfg.batch_size)
    per: dict[str, list[float]] = {}
    for a, p in zip(attrs, probs, strict=True):
        per.setdefault(a, []).append(p)
    total, count = np.zeros(len(images)), np.zeros(len(images), dtype=np.int64)
    np.add.at(total, owner, probs)
    np.add.at(count, owner, 1)
    return {
        "score": float(np.mean(probs)),
        "n": len(probs),
        "per_attribute": {a: float(np.mean(v)) for a, v in sorted(per.items())},
        "per_image": [[float(t), int(c)] for t, c in zip(total, count, strict=True)],
    }


@torch.no_grad()
def masked_code_nll(
    pipe, codes_BN: torch.Tensor, prompt_ids: Sequence[list[int]], mask_N: torch.Tensor
) -> torch.Tensor:
    """Negative log-likelihood of the real codes ``codes_BN`` at the masked positions
    ``mask_N`` (the same for every row; the others are given), each row conditioned on its
    prompt token ids, through the training forward (bf16 autocast). Returns nll_B: nats per
    row, summed over its masked positions (fp32)."""
    import torch.nn.functional as F

    from ..data.sequences import build_t2i, collate
    from ..vocab import Task

    L, K = pipe.layout, pipe.layout.codebook_size
    mask = mask_N.to(codes_BN.device).expand_as(codes_BN)
    ids_in = torch.where(mask, L.mask_id, L.codes_to_ids(codes_BN))
    batch = collate(
        [build_t2i(L, q, c) for q, c in zip(prompt_ids, codes_BN.cpu(), strict=True)], L
    )
    ids = batch.input_ids_BT.clone().to(pipe.device)
    img = batch.image_mask_BT.to(pipe.device)
    ids[img] = ids_in.reshape(-1)
    task = torch.full((len(prompt_ids),), int(Task.T2I), device=pipe.device)
    noise = torch.full((len(prompt_ids),), float(mask_N.float().mean()), device=pipe.device)
    mod = batch.modality_BT.to(pipe.device)
    with torch.autocast(pipe.device.type, dtype=torch.bfloat16):
        out = pipe.model(ids, mod, task, noise, router_stats=False)
    lo = L.image_offset
    logits = out.logits_BTV[img].view(*codes_BN.shape, -1)[..., lo : lo + K].float()
    nll = F.cross_entropy(logits.transpose(1, 2), codes_BN, reduction="none")
    return (nll * mask).sum(1)


def prompt_gap(
    pipe, images: Sequence[Image.Image], prompts: Sequence[str], ratio: float = 0.9, seed: int = 0
) -> dict:
    """How much the generator listens to the prompt: the masked-code cross-entropy of the real
    faces' codes (``ratio`` of them masked, the same positions for every row) with each face's
    own prompt vs with the next face's prompt (a rotation) vs with an empty one, through the
    training forward (no sampling noise). ``gap`` = CE(other prompt) − CE(own prompt), in nats:
    0 when the model ignores the prompt."""
    if len(images) < 2:
        raise UserError("the prompt gap needs at least 2 faces")
    codes, _ = pipe.encode_images(list(images))
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(codes.shape[1], generator=g) < ratio
    own = [pipe.text_tokenizer.encode(p)[: pipe.sampling.max_text_len - 3] for p in prompts]
    variants = {"own": own, "other": own[1:] + own[:1], "empty": [[] for _ in own]}
    n_masked = int(mask.sum()) * len(own)
    ce = {
        k: float(masked_code_nll(pipe, codes, v, mask).sum()) / n_masked
        for k, v in variants.items()
    }
    return {
        "ce_own_prompt": ce["own"],
        "ce_other_prompt": ce["other"],
        "ce_empty_prompt": ce["empty"],
        "gap": ce["other"] - ce["own"],
        "masked_ratio": float(mask.float().mean()),
        "n": len(prompts),
    }


def evaluate_generation(pipe, judge, data: str, split: str, cfg: EvalConfig) -> dict:
    """Fidelity (generated and real), VQAScore and FID for ``split``; returns metrics and
    the generated images (for the report)."""
    from .metrics import fid_from_features, kid_from_features, kid_terms

    recs = load_records(data, split, cfg.num, ["id", "image", "attributes", "prompts"])
    prompts = [r["prompts"][0] for r in recs]
    asked = [prompted_attributes(p) for p in prompts]
    t0 = time.time()
    images = _generate(pipe, prompts, cfg, cfg.seed)
    gen_s = time.time() - t0
    gen_u8 = to_uint8(images)
    from ..data.shards import decode_image

    real = [decode_image(r["image"]) for r in recs]
    res = {
        "n_prompts": len(prompts),
        "generate_s": round(gen_s, 1),
        "fidelity": fidelity(judge, gen_u8, asked),
        "fidelity_real": fidelity(judge, to_uint8(real), asked),
        "vqa_score": vqa_score(pipe, images, asked, cfg),
        "prompt_gap": prompt_gap(pipe, real[:64], prompts[:64], seed=cfg.seed),
    }
    units = {"ids": [r["id"] for r in recs]}
    for key in ("fidelity", "fidelity_real", "vqa_score"):
        units[key] = res[key].pop("per_image")
    real_ref = _real_images(data, split, cfg.fid_real)
    f_ref = judge.features(real_ref).numpy()
    f_gen = judge.features(gen_u8).numpy()
    f_val = judge.features(_real_images(data, "val", len(images))).numpy()
    res["fid"] = fid_from_features(f_gen, f_ref)
    res["fid_floor_val"] = fid_from_features(f_val, f_ref)
    kid = kid_terms(f_gen, f_ref)
    units["kid"] = kid.unit_rows()
    res["kid"] = kid.value()
    res["kid_floor_val"] = kid_from_features(f_val, f_ref)
    res["fid_features"] = f"judge penultimate layer ({f_ref.shape[1]} dims)"
    res["fid_sizes"] = {"generated": len(images), "real": len(real_ref)}
    return {"metrics": res, "units": units, "prompts": prompts, "images": images, "real": real,
            "asked": asked}  # fmt: skip


def _real_images(data: str, split: str, num: int) -> torch.Tensor:
    from ..data.shards import decode_image

    return to_uint8([decode_image(r["image"]) for r in load_records(data, split, num, ["image"])])


def evaluate_diversity(pipe, judge, data: str, split: str, cfg: EvalConfig) -> dict:
    """Judge-feature diversity of ``diversity_samples`` samples for each of
    ``diversity_prompts`` prompts (different seeds)."""
    from .metrics import sample_diversity

    recs = load_records(data, split, cfg.diversity_prompts, ["prompts"])
    prompts = [r["prompts"][0] for r in recs]
    feats, ids = [], []
    for s in range(cfg.diversity_samples):
        imgs = _generate(pipe, prompts, cfg, cfg.seed + 1000 + s)
        feats.append(judge.features(to_uint8(imgs)).numpy())
        ids += list(range(len(prompts)))
    return sample_diversity(np.concatenate(feats), ids).to_dict()


# --- understanding -------------------------------------------------------------------------
def evaluate_understanding(pipe, data: str, split: str, cfg: EvalConfig, llm=None) -> dict:
    """Captions and VQA answers for the first ``num`` faces of ``split``, scored (and, with
    an LLM :class:`~unif2ace.eval.llm.ChatBackend`, judged: the paper's Desc / Conv)."""
    from ..data.ontology import visible_labels
    from ..data.shards import decode_image
    from .metrics import bleu_4, caption_attribute_scores, cider_d, prior_answers, vqa_accuracy

    recs = load_records(data, split, cfg.num, ["id", "image", "attributes", "caption", "vqa"])
    faces = [decode_image(r["image"]) for r in recs]
    t0 = time.time()
    captions = pipe.describe(faces, batch_size=cfg.batch_size)
    cap_s = time.time() - t0
    refs = [r["caption"] for r in recs]
    labels = [visible_labels(r["labels"]) for r in recs]
    qa = [q for r in recs for q in r["vqa"]]
    rows = [f for f, r in zip(faces, recs, strict=True) for _ in r["vqa"]]
    t0 = time.time()
    answers = pipe.ask(rows, [q["question"] for q in qa], batch_size=cfg.batch_size)
    vqa_s = time.time() - t0
    cider = cider_d(captions, [[r] for r in refs])
    metrics = {
        "n_faces": len(recs),
        "caption_s": round(cap_s, 1),
        "vqa_s": round(vqa_s, 1),
        "caption_attributes": caption_attribute_scores(captions, labels, refs).to_dict(),
        "caption_attributes_vs_labels": caption_attribute_scores(
            captions, labels, refs, reference="labels"
        ).to_dict(),
        "bleu_4": bleu_4(captions, [[r] for r in refs]),
        "cider_d": cider.score,
        "vqa": vqa_accuracy(answers, qa).to_dict(),
    }
    train_qa = _train_vqa(data, split, cfg.num * 20)
    blind = prior_answers(train_qa, qa) if train_qa else None
    if blind is not None:  # the blind baseline: what the question alone predicts
        metrics["vqa_blind"] = vqa_accuracy(blind, qa).to_dict()
    units = understanding_units(captions, labels, refs, cider.per_item, answers, blind, recs)
    it = iter(answers)
    examples = []
    for r, c in zip(recs, captions, strict=True):
        got = [next(it) for _ in r["vqa"]]
        qa_rows = [
            {"question": q["question"], "answer": a, "reference": q["answer"]}
            for q, a in zip(r["vqa"], got, strict=True)
        ]
        examples.append({"id": r["id"], "caption": c, "reference": r["caption"], "qa": qa_rows})
    if llm is not None:
        from .metrics import llm_judge

        metrics["llm_judge"] = llm_judge(llm, examples[: cfg.llm_faces])
    return {"metrics": metrics, "units": units, "faces": faces, "examples": examples}


def understanding_units(captions, labels, refs, cider_items, answers, blind, recs) -> dict:
    """What each face contributed to the understanding numbers (:mod:`.intervals`): its
    caption's [correct, claims, recalled, reference] (vs the reference caption), its CIDEr-D,
    and [right, asked] of its questions for the model and (``blind`` not None) the blind
    baseline; ``answers`` / ``blind`` run over the faces' questions in order."""
    from .metrics import answers_match
    from .metrics.caption_attributes import per_caption_counts

    def per_face(preds) -> list[list[int]]:
        it, out = iter(preds), []
        for r in recs:
            ok = [answers_match(next(it), q["answer"], q.get("attribute") or "",
                                q.get("kind") or "open") for q in r["vqa"]]  # fmt: skip
            out.append([int(sum(ok)), len(ok)])
        return out

    caption = per_caption_counts(captions, labels, refs)
    units = {
        "ids": [r["id"] for r in recs],
        "caption": [[c.correct, c.claims, c.recalled, c.reference] for c in caption],
        "cider_d": [float(x) for x in cider_items],
        "vqa": per_face(answers),
    }
    if blind is not None:
        units["vqa_blind"] = per_face(blind)
    return units


def _train_vqa(data: str, split: str, num: int) -> list[dict]:
    """Question/answer pairs of the first ``num`` training records (none when ``split`` is
    itself the training split or the data has none)."""
    from ..data.shards import iter_records

    if split == "train":
        return []
    out: list[dict] = []
    try:
        for i, rec in enumerate(iter_records(data, "train", ["vqa"])):
            if i >= num:
                break
            out += rec["vqa"] or []
    except UserError:
        return []
    return out


def evaluate_model(pipe, judge, data: str, cfg: EvalConfig, log=print, llm=None) -> dict:
    """Everything above for every split in ``cfg.splits``; returns ``{"metrics", "media"}``.
    ``llm``: an optional chat backend for the Desc / Conv judge scores."""
    metrics: dict = {"config": asdict(cfg), "decoding": decoding(pipe, cfg), "splits": {}}
    media: dict = {}
    for split in cfg.splits:
        log(f"[eval] {split}: generating {cfg.num} faces ...")
        gen = evaluate_generation(pipe, judge, data, split, cfg)
        m = {"generation": gen.pop("metrics"), "units": gen.pop("units")}
        media[split] = {"generation": gen}
        if cfg.understanding:
            log(f"[eval] {split}: captions and VQA for {cfg.num} faces ...")
            und = evaluate_understanding(pipe, data, split, cfg, llm)
            m["understanding"] = und.pop("metrics")
            units = und.pop("units")
            if units.pop("ids") != m["units"]["ids"]:
                raise RuntimeError("generation and understanding scored different records")
            m["units"] |= units
            media[split]["understanding"] = und
        metrics["splits"][split] = m
    if cfg.diversity_prompts and cfg.diversity_samples > 1:
        log("[eval] diversity ...")
        metrics["diversity"] = evaluate_diversity(pipe, judge, data, cfg.splits[0], cfg)
    metrics["summary"] = summary(metrics)
    metrics["ci95"] = {split: intervals(m["units"]) for split, m in metrics["splits"].items()}
    return {"metrics": metrics, "media": media}


def summary(metrics: dict) -> dict:
    """The headline numbers (TARGETS.md's quality table) per split."""
    out = {}
    for split, m in metrics["splits"].items():
        g = m["generation"]
        s = {
            "generation_fidelity": g["fidelity"]["accuracy"],
            "generation_fidelity_real_ceiling": g["fidelity_real"]["accuracy"],
            "vqa_score": g["vqa_score"]["score"],
            "fid": g["fid"],
            "fid_floor": g["fid_floor_val"],
            "kid": g.get("kid", math.nan),
            "kid_floor": g.get("kid_floor_val", math.nan),
            "prompt_gap_nats": g["prompt_gap"]["gap"],
            "denoise_ce_nats": g["prompt_gap"]["ce_own_prompt"],
        }
        if "understanding" in m:
            u = m["understanding"]
            s |= {
                "caption_attribute_f1": u["caption_attributes"]["f1"],
                "caption_attribute_precision": u["caption_attributes"]["precision"],
                "caption_attribute_f1_vs_labels": u["caption_attributes_vs_labels"]["f1"],
                "vqa_accuracy": u["vqa"]["accuracy"],
                "vqa_accuracy_blind": u.get("vqa_blind", {}).get("accuracy", math.nan),
                "vqa_minus_blind": u["vqa"]["accuracy"]
                - u.get("vqa_blind", {}).get("accuracy", math.nan),
                "bleu_4": u["bleu_4"],
                "cider_d": u["cider_d"],
            }
            if "llm_judge" in u:
                s |= {
                    "desc_llm": u["llm_judge"]["desc"]["mean"],
                    "conv_llm": u["llm_judge"]["conv"]["mean"],
                }
        out[split] = s
    return out
