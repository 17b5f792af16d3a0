"""Building FaceForge data sets: label sampling → rendering → text → parquet shards.

Every record is a pure function of ``(seed, split, index)``: its labels, identity, image,
caption, prompts and VQA come from one ``numpy`` generator seeded by that triple. Shards are
therefore identical however the work is split over worker processes, and an interrupted
build resumes by writing the shards that are missing (finished shards are complete files:
``write_shard`` renames atomically).

Splits: ``train``/``val``/``test`` draw label sets that avoid every held-out attribute pair;
``test_heldout`` fixes one held-out pair per record (compositional generalisation: the pair
never co-occurs in train).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...atomic import write_json_atomic
from ...errors import UserError
from .. import ontology as onto
from ..shards import (
    MANIFEST,
    SPLITS,
    encode_png,
    file_sha256,
    list_shards,
    read_manifest,
    shard_path,
    write_shard,
)

# Attribute pairs that never co-occur in train/val/test, chosen in advance. Each is plausible
# on its own and frequent enough that both halves are well represented in train.
HELDOUT_PAIRS: tuple[tuple[tuple[str, object], tuple[str, object]], ...] = (
    (("hair_color", "red"), ("glasses", "eyeglasses")),
    (("freckles", True), ("hat", True)),
    (("emotion", "surprised"), ("earrings", True)),
    (("beard", True), ("hair_color", "blond")),
    (("moles", True), ("lipstick", True)),
)


@dataclass(frozen=True)
class BuildPreset:
    """How a FaceForge set is built. ``fractions`` are of ``num`` for val/test/test_heldout."""

    size: int = 128
    num: int = 20000
    shard_size: int = 1000
    val_frac: float = 0.05
    test_frac: float = 0.05
    heldout_frac: float = 0.05
    prompts_per_image: int = 3
    vqa_per_image: int = 8


PRESETS: dict[str, BuildPreset] = {
    "tiny": BuildPreset(size=64, num=256, shard_size=64),
    "small": BuildPreset(size=128, num=20000, shard_size=1000),
    "large": BuildPreset(size=256, num=130000, shard_size=2000),
}


def get_preset(name: str) -> BuildPreset:
    if name not in PRESETS:
        raise UserError(f"unknown data preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]


def split_counts(p: BuildPreset, num: int) -> dict[str, int]:
    """Records per split; every split gets at least one record when ``num >= 4``."""
    if num < 4:
        raise UserError(f"--num must be at least 4 (one record per split), got {num}")
    held = {
        s: max(1, round(num * f))
        for s, f in (("val", p.val_frac), ("test", p.test_frac), ("test_heldout", p.heldout_frac))
    }
    return {"train": num - sum(held.values()), **held}


def has_heldout_pair(labels: onto.Labels) -> bool:
    return any(labels.get(a) == va and labels.get(b) == vb for (a, va), (b, vb) in HELDOUT_PAIRS)


def make_record(seed: int, split: str, index: int, p: BuildPreset) -> dict:
    """One record, a pure function of its arguments."""
    from .captions import make_caption, make_prompts
    from .labels import sample_labels
    from .render import render_face, sample_identity
    from .vqa import make_vqa

    split_code = SPLITS.index(split)
    rng = np.random.default_rng([seed, split_code, index])
    if split == "test_heldout":
        (a, va), (b, vb) = HELDOUT_PAIRS[index % len(HELDOUT_PAIRS)]
        labels = sample_labels(rng, {a: va, b: vb})
    else:
        labels = sample_labels(rng)
        while has_heldout_pair(labels):  # ~15% of draws; rejection keeps the marginals
            labels = sample_labels(rng)
    identity = sample_identity(rng)
    render_seed = int(rng.integers(2**31))
    image = render_face(labels, identity, size=p.size, seed=render_seed)
    return {
        "id": f"ff-{split}-{index:07d}",
        "split": split,
        "source": "faceforge",
        "image": encode_png(image),
        "width": p.size,
        "height": p.size,
        "attributes": labels,
        "hidden": sorted(k for k in onto.hidden_attributes(labels) if labels[k] is not None),
        "identity": identity,
        "caption": make_caption(labels, rng),
        "prompts": make_prompts(labels, rng, n=p.prompts_per_image),
        "vqa": make_vqa(labels, rng, n=p.vqa_per_image),
        "seed": render_seed,
    }


def _build_shard(job: tuple[str, int, int, int, int, dict]) -> tuple[str, int, str, int]:
    out, seed, split_code, shard, n, preset = job
    p = BuildPreset(**preset)
    split = SPLITS[split_code]
    start = shard * p.shard_size
    records = [make_record(seed, split, i, p) for i in range(start, min(start + p.shard_size, n))]
    digest = write_shard(shard_path(out, split, shard), records)
    return split, shard, digest, len(records)


def _check_resumable(out: Path, params: dict) -> None:
    path = out / "build.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old != params:
            raise UserError(
                f"{out} holds a FaceForge build with other settings ({old}); "
                "use another --out folder or delete this one"
            )
    elif out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not a FaceForge build; use an empty --out folder")
    write_json_atomic(path, params)


def build_dataset(
    out: str | Path,
    preset: str = "small",
    num: int | None = None,
    seed: int = 0,
    workers: int = 1,
    size: int | None = None,
    shard_size: int | None = None,
    progress: bool = True,
) -> dict:
    """Build (or resume building) a FaceForge data set; returns its manifest."""
    p = get_preset(preset)
    if size is not None:
        p = BuildPreset(**{**asdict(p), "size": size})
    if shard_size is not None:
        if shard_size < 1:
            raise UserError(f"--shard-size must be positive, got {shard_size}")
        p = BuildPreset(**{**asdict(p), "shard_size": shard_size})
    if p.size not in (64, 128, 256):
        raise UserError(f"image size must be 64, 128 or 256, got {p.size}")
    num = p.num if num is None else num
    counts = split_counts(p, num)
    out = Path(out)
    params = {
        "generator": "faceforge",
        "preset": preset,
        "num": num,
        "seed": seed,
        "build": asdict(p),
        "ontology_hash": onto.ontology_hash(),
    }
    _check_resumable(out, params)
    jobs = []
    for split, n in counts.items():
        for shard in range((n + p.shard_size - 1) // p.shard_size):
            if not shard_path(out, split, shard).is_file():
                jobs.append((str(out), seed, SPLITS.index(split), shard, n, asdict(p)))
    t0, done = time.time(), 0
    total = len(jobs)
    if workers > 1 and total > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for res in pool.map(_build_shard, jobs):
                done += 1
                _report(progress, done, total, res, t0)
    else:
        for job in jobs:
            done += 1
            _report(progress, done, total, _build_shard(job), t0)
    return write_manifest(out, params, counts)


def _report(progress: bool, done: int, total: int, res, t0: float) -> None:
    if not progress:
        return
    el = time.time() - t0
    eta = el / done * (total - done)
    print(
        f"[faceforge] shard {done}/{total} ({res[0]} #{res[1]}, {res[3]} records) "
        f"{el:.0f}s elapsed, ETA {eta:.0f}s",
        flush=True,
    )


def write_manifest(out: Path, params: dict, counts: dict[str, int]) -> dict:
    shards = {s: {p.name: file_sha256(p) for p in list_shards(out, s)} for s in counts}
    manifest = {
        **params,
        "format": "unif2ace-shards/1",
        "ontology": onto.ontology_dict(),
        "ontology_version": onto.ONTOLOGY_VERSION,
        "counts": counts,
        "shards": shards,
        "heldout_pairs": [[list(a), list(b)] for a, b in HELDOUT_PAIRS],
    }
    write_json_atomic(out / MANIFEST, manifest)
    return manifest


def verify_dataset(root: str | Path) -> list[str]:
    """Shards whose checksum differs from the manifest (empty list: all intact)."""
    m = read_manifest(root)
    bad = []
    for split, files in m.get("shards", {}).items():
        for name, digest in files.items():
            path = Path(root) / split / name
            if not path.is_file() or file_sha256(path) != digest:
                bad.append(f"{split}/{name}")
    return bad
