"""``unif2ace data refine``: caption refinement over a shard data set (issue 6, NOTES.md §6).

Pipeline per shard: draft captions from a pluggable :class:`Captioner` (FaceForge's own caption
column, a trained unif2ace model, or an OpenAI-compatible chat endpoint), optionally damaged on
purpose (``--corrupt-wrong/--corrupt-omit``, to measure the refiner), judged by an attribute
judge (:mod:`unif2ace.eval.judge`, or :class:`OracleJudge`), rewritten by
:func:`unif2ace.eval.refine.refine_caption`, with fresh VQA pairs. Output: the same shard
layout and columns plus ``edits`` (JSON: draft, corruption, every edit with confidences), a
``manifest.json`` and ``refine_report.json`` (caption attribute precision / recall against the
true labels for the clean, draft and refined captions). Shards are written atomically and
skipped when present, so a rerun resumes. Heavy imports happen inside the functions.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import UserError
from .llm import add_backend_args

REPORT = "refine_report.json"
PARAMS = "refine.json"


# ---------------------------------------------------------------------------- captioners
class Captioner(Protocol):
    """Writes draft captions for a batch of shard rows (their decoded images alongside)."""

    name: str

    def drafts(self, records: Sequence[dict], images: Sequence) -> list[str]: ...


class FaceForgeCaptioner:
    """The data set's own ``caption`` column."""

    name = "faceforge"

    def drafts(self, records: Sequence[dict], images: Sequence) -> list[str]:
        return [str(r.get("caption") or "") for r in records]


class ModelCaptioner:
    """A trained unif2ace model: ``FacePipeline.from_pretrained(dir).describe(images)``."""

    def __init__(self, folder: str, batch_size: int = 8):
        from ..pipeline import FacePipeline

        self.name = f"model:{folder}"
        self.pipe = FacePipeline.from_pretrained(folder)
        self.batch_size = batch_size

    def drafts(self, records: Sequence[dict], images: Sequence) -> list[str]:
        return self.pipe.describe(list(images), batch_size=self.batch_size)


class LLMCaptioner:
    """A vision-language model behind an OpenAI-compatible endpoint (:mod:`.llm`)."""

    def __init__(self, backend):
        self.name = f"llm:{backend.model}"
        self.backend = backend

    def drafts(self, records: Sequence[dict], images: Sequence) -> list[str]:
        return self.backend.describe(images)


# -------------------------------------------------------------------------------- judges
class NetworkJudge:
    """A trained attribute judge folder (:func:`unif2ace.eval.judge.load_judge`)."""

    def __init__(self, folder: str):
        from .judge import load_judge

        self.name = str(folder)
        self.model = load_judge(folder)

    def __call__(self, records: Sequence[dict], images: Sequence):
        import torch

        from .judge import predict

        size = self.model.cfg.size
        arrs = [np.asarray(im.convert("RGB").resize((size, size))) for im in images]
        x_NCHW = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()
        return predict(self.model, x_NCHW)


class OracleJudge:
    """A judge that reads the true labels: confidence 1.0 for every visible label, hidden =
    the ontology's hidden set. It is a measuring device, not a model: refining with it gives
    the refiner's *upper bound* (what a perfect judge would allow), separating the refiner's
    own losses from the judge's errors. Only for data with labels (FaceForge)."""

    name = "oracle"

    def __call__(self, records: Sequence[dict], images: Sequence):
        from ..data.ontology import hidden_attributes, visible_labels
        from ..data.shards import labels_of
        from .judge import JudgePrediction

        labels = [labels_of(r) for r in records]
        values = [visible_labels(lab) for lab in labels]
        conf = [dict.fromkeys(v, 1.0) for v in values]
        return JudgePrediction(values, conf, [hidden_attributes(lab) for lab in labels])


def build_judge(spec: str):
    """``oracle`` or a judge folder."""
    return OracleJudge() if spec == "oracle" else NetworkJudge(spec)


def build_captioner(spec: str, backend=None) -> Captioner:
    """``faceforge`` | ``model:DIR`` | ``llm`` (needs ``backend``)."""
    if spec == "faceforge":
        return FaceForgeCaptioner()
    if spec.startswith("model:") and len(spec) > 6:
        return ModelCaptioner(spec[6:])
    if spec == "llm":
        if backend is None:
            raise UserError("--captioner llm needs --llm-url and --llm-model")
        return LLMCaptioner(backend)
    raise UserError(f"unknown captioner {spec!r}; valid: faceforge, model:DIR, llm")


# ------------------------------------------------------------------------------ records
def _rng(seed: int, rec_id: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(rec_id.encode()), stream])


def refine_records(
    records: Sequence[dict],
    judge: Callable,
    captioner: Captioner,
    cfg=None,
    corrupt: tuple[float, float] | None = None,
    seed: int = 0,
    vqa_backend=None,
) -> list[dict]:
    """Refined copies of shard rows: new ``caption`` and ``vqa``, plus an ``edits`` JSON column.

    Args:
        records: rows of :data:`unif2ace.data.shards.RECORD_SCHEMA`.
        judge: ``judge(records, images) -> JudgePrediction``.
        captioner: draft writer.
        cfg: :class:`~unif2ace.eval.refine.RefineConfig`.
        corrupt: ``(wrong, omit)`` fractions to damage the drafts (needs labels), or None.
        seed: corruption, reasoning and VQA randomness (per row: seed and row id).
        vqa_backend: a :class:`~unif2ace.eval.llm.ChatBackend` to write VQA pairs, or None
            for the templates.
    """
    from ..data.ontology import BY_NAME
    from ..data.shards import decode_image, labels_of
    from .refine import RefineConfig, corrupt_caption, refine_caption, template_vqa

    cfg = cfg or RefineConfig()
    images = [decode_image(r["image"]) for r in records]
    drafts = captioner.drafts(records, images)
    pred = judge(records, images)
    out = []
    for i, rec in enumerate(records):
        info = None
        draft = drafts[i]
        if corrupt is not None:
            labels = {k: v for k, v in labels_of(rec).items() if k in BY_NAME}
            draft, info = corrupt_caption(draft, labels, *corrupt, _rng(seed, rec["id"], 0))
        rng = _rng(seed, rec["id"], 1)
        ref = refine_caption(draft, pred.values[i], pred.confidence[i], pred.hidden[i], cfg, rng)
        vqa = vqa_backend.write_vqa(ref.caption) if vqa_backend is not None else []
        vqa_source = "llm" if vqa else "template"  # also when the LLM's reply was unusable
        vqa = vqa or template_vqa(ref.facts, pred.hidden[i], rng)
        edits = {
            "captioner": captioner.name,
            "draft": draft,
            "corruption": info,
            "hidden": sorted(pred.hidden[i]),
            "vqa": vqa_source,
            "edits": ref.edits_dicts(),
        }
        out.append({**rec, "caption": ref.caption, "vqa": vqa, "edits": json.dumps(edits)})
    return out


def write_refined_shard(path: Path, records: Sequence[dict]) -> str:
    """Rows of RECORD_SCHEMA + ``edits`` to one parquet file, atomically; returns its sha256."""
    import pyarrow as pa

    from ..data.shards import RECORD_SCHEMA, normalize_record, write_table_atomic

    schema = RECORD_SCHEMA.append(pa.field("edits", pa.string()))
    rows = [{**normalize_record(r), "edits": r["edits"]} for r in records]
    return write_table_atomic(path, pa.Table.from_pylist(rows, schema=schema))


# ------------------------------------------------------------------------------ dataset
def _check_params(out: Path, params: dict) -> None:
    from ..atomic import write_json_atomic

    p = out / PARAMS
    if p.is_file():
        old = json.loads(p.read_text())
        if old != params:
            diff = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
            raise UserError(
                f"{out} holds a refinement made with other settings ({', '.join(diff)}); "
                "rerun with the same options to resume, or use another --out"
            )
    else:
        write_json_atomic(p, params)


def refine_dataset(
    data: str | Path,
    out: str | Path,
    judge_spec: str,
    captioner: Captioner,
    cfg=None,
    splits: Sequence[str] | None = None,
    corrupt: tuple[float, float] | None = None,
    seed: int = 0,
    vqa_backend=None,
    batch_size: int = 64,
    progress: bool = True,
    on_shard: Callable[[Path], None] | None = None,
) -> dict:
    """Refine every shard of ``splits`` of ``data`` into ``out`` (resumable); returns the report.

    ``on_shard(path)`` is called after each shard is written (progress hooks, tests).
    """
    from ..atomic import write_json_atomic
    from ..data.shards import SPLITS, list_shards, read_manifest, read_shard
    from .refine import RefineConfig

    cfg = cfg or RefineConfig()
    data, out = Path(data), Path(out)
    manifest = read_manifest(data)
    splits = list(splits or [s for s in SPLITS if list_shards(data, s)])
    jobs = [(s, p) for s in splits for p in list_shards(data, s)]
    if not jobs:
        raise UserError(f"no shards in {data} for split(s) {', '.join(splits)}")
    params = {
        "captioner": captioner.name,
        "judge": judge_spec,
        "config": asdict(cfg),
        "corrupt": list(corrupt) if corrupt else None,
        "seed": seed,
        "splits": splits,
        "vqa": "llm:" + vqa_backend.model if vqa_backend is not None else "template",
    }
    if corrupt is not None and not (0 <= min(corrupt) and sum(corrupt) <= 1):
        raise UserError(f"corruption fractions must be >= 0 with sum <= 1, not {corrupt}")
    todo = [(s, p) for s, p in jobs if not (out / s / p.name).is_file()]
    judge = build_judge(judge_spec) if todo else None  # fails before anything is written
    _check_params(out, params)
    t0, faces = time.time(), 0
    for k, (split, path) in enumerate(todo, 1):
        rows = read_shard(path)
        refined = []
        for i in range(0, len(rows), batch_size):
            batch = rows[i : i + batch_size]
            refined += refine_records(batch, judge, captioner, cfg, corrupt, seed, vqa_backend)
        write_refined_shard(out / split / path.name, refined)
        faces += len(rows)
        if progress:
            el = time.time() - t0
            print(
                f"[refine] shard {k}/{len(todo)} ({split} {path.name}, {len(rows)} faces) "
                f"{faces / el:.0f} faces/s, {el:.0f}s elapsed, ETA {el / k * (len(todo) - k):.0f}s",
                flush=True,
            )
        if on_shard is not None:
            on_shard(out / split / path.name)
    shards = {s: {p.name: _sha(out / s / p.name) for p in list_shards(data, s)} for s in splits}
    counts = {s: manifest.get("counts", {}).get(s) for s in splits}
    refined_manifest = {**manifest, "counts": counts, "shards": shards, "refine": params}
    write_json_atomic(out / "manifest.json", refined_manifest)
    report = refine_report(data, out, splits)
    write_json_atomic(out / REPORT, report)
    return report


def _sha(path: Path) -> str:
    from ..data.shards import file_sha256

    return file_sha256(path)


# ------------------------------------------------------------------------------- report
def refine_report(data: str | Path, out: str | Path, splits: Sequence[str]) -> dict:
    """Caption attribute precision (= accuracy of stated attributes) and recall against the
    true labels (``reference="labels"``) for the data set's clean captions, the drafts and the
    refined captions, plus edit counts and how many corrupted attributes were repaired."""
    from ..data.caption_parser import parse_caption
    from ..data.ontology import BY_NAME
    from ..data.shards import iter_records, labels_of
    from .metrics.caption_attributes import caption_attribute_scores

    rows = [r for s in splits for r in iter_records(out, s, ["attributes", "caption", "edits"])]
    clean = [r["caption"] for s in splits for r in iter_records(data, s, ["caption"])]
    edits = [json.loads(r["edits"]) for r in rows]
    labels = [{k: v for k, v in labels_of(r).items() if k in BY_NAME} for r in rows]
    refined = [r["caption"] for r in rows]
    kinds = Counter(e["kind"] for x in edits for e in x["edits"])
    report: dict = {"n": len(rows), "splits": list(splits), "edits": dict(sorted(kinds.items()))}
    pairs = zip(refined, edits, strict=True)
    leaks = sum(bool(set(parse_caption(c)) & set(x["hidden"])) for c, x in pairs)
    report["hidden_stated"] = leaks
    if any(v is not None for lab in labels for v in lab.values()):
        scores = {}
        for name, caps in (
            ("clean", clean),
            ("draft", [x["draft"] for x in edits]),
            ("refined", refined),
        ):
            s = caption_attribute_scores(caps, labels, reference="labels")
            scores[name] = {
                "accuracy": s.precision,  # of the attributes stated (= micro precision)
                "precision": s.precision,
                "recall": s.recall,
                "f1": s.f1,
                "macro_f1": s.macro_f1,
                "claims_per_caption": sum(c["claims"] for c in s.per_attribute.values())
                / len(caps),
                "n_unverifiable": s.n_unverifiable,
            }
        report["scores"] = scores
        report["repair"] = _repair(edits, refined)
    return report


def _repair(edits: list[dict], refined: list[str]) -> dict:
    """How many switched attributes the refined captions state correctly again, and how many
    removed ones they state again (any value)."""
    from ..data.caption_parser import parse_caption

    sw = fixed = rm = back = 0
    for x, cap in zip(edits, refined, strict=True):
        c = x.get("corruption")
        if not c:
            continue
        claims = parse_caption(cap)
        sw += len(c["switched"])
        fixed += sum(claims.get(a) == tv for a, (tv, _) in c["switched"].items())
        rm += len(c["removed"])
        back += sum(a in claims for a in c["removed"])
    return {
        "switched": sw,
        "switched_fixed": fixed,
        "removed": rm,
        "removed_restated": back,
    }


# ---------------------------------------------------------------------------------- CLI
def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add ``data refine`` to the ``data`` group (see ``unif2ace.cli``)."""
    p = groups["data"].add_parser(
        "refine",
        help="rewrite captions with an attribute judge: correct, enhance, reason (paper step 3)",
        description="Caption refinement: draft captions (FaceForge's own, a trained model, or "
        "an OpenAI-compatible endpoint) are corrected and enhanced with an attribute judge's "
        "confident predictions, given reasoning sentences and fresh VQA pairs. Writes refined "
        "shards with an `edits` column, a manifest and refine_report.json; rerun to resume.",
    )
    p.add_argument("--data", required=True, help="shard data set folder")
    p.add_argument("--judge", required=True, help="judge folder, or `oracle` (true labels)")
    p.add_argument("--out", required=True, help="output data set folder")
    p.add_argument("--split", default=None, help="comma-separated splits (default: all)")
    p.add_argument("--captioner", default="faceforge", help="faceforge | model:DIR | llm")
    p.add_argument("--vqa", default="template", choices=("template", "llm"))
    add_backend_args(p)
    p.add_argument("--corrupt-wrong", type=float, default=0.0, help="fraction switched")
    p.add_argument("--corrupt-omit", type=float, default=0.0, help="fraction removed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--correct-threshold", type=float, default=0.8)
    p.add_argument("--enhance-threshold", type=float, default=0.9)
    p.add_argument("--max-added", type=int, default=8)
    p.add_argument("--max-reasoning", type=int, default=1)
    p.add_argument("--no-merge", action="store_true", help="added facts in new sentences only")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .llm import backend_from_args
    from .refine import RefineConfig

    backend = backend_from_args(args)
    if args.vqa == "llm" and backend is None:
        raise UserError("--vqa llm needs --llm-url and --llm-model")
    if args.batch_size < 1:
        raise UserError("--batch-size must be >= 1")
    corrupt = None
    if args.corrupt_wrong or args.corrupt_omit:
        if args.captioner != "faceforge":
            raise UserError(
                "--corrupt-wrong/--corrupt-omit damage FaceForge's own captions; "
                "use --captioner faceforge"
            )
        corrupt = (args.corrupt_wrong, args.corrupt_omit)
    cfg = RefineConfig(
        args.correct_threshold,
        args.enhance_threshold,
        args.max_added,
        args.max_reasoning,
        merge=not args.no_merge,
    )
    report = refine_dataset(
        args.data,
        args.out,
        args.judge,
        build_captioner(args.captioner, backend),
        cfg,
        splits=args.split.split(",") if args.split else None,
        corrupt=corrupt,
        seed=args.seed,
        vqa_backend=backend if args.vqa == "llm" else None,
        batch_size=args.batch_size,
    )
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        for name, s in report.get("scores", {}).items():
            print(f"[refine] {name:8s} precision {s['precision']:.4f} recall {s['recall']:.4f}")
        print(f"[refine] wrote {args.out} ({report['n']} faces), {REPORT}")
    return 0
