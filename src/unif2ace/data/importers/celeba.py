"""CelebA / CelebA-HQ: 40 binary attributes mapped onto the ontology.

Layout (the official archives, flattened or not)::

    ROOT/list_attr_celeba.txt          (or Anno/list_attr_celeba.txt;
                                        CelebAMask-HQ: CelebAMask-HQ-attribute-anno.txt)
    ROOT/img_align_celeba/000001.jpg   (or Img/img_align_celeba/, CelebA-HQ-img/, img_celeba/)
    ROOT/list_eval_partition.txt       optional: "000001.jpg 0" (0 train, 1 val, 2 test)
    ROOT/CelebA-HQ-to-CelebA-mapping.txt  optional (CelebA-HQ): "idx orig_idx orig_file"
    ROOT/celeba-caption/<stem>.txt     optional (MM-CelebA-HQ): first line is the caption

``list_attr_celeba.txt``: line 1 the image count, line 2 the 40 attribute names, then
``filename v1 … v40`` with values 1 / -1. CelebV-HQ's appearance labels use the same names
(0 / 1), so :func:`map_celeba_attributes` serves both.

Mapping (CelebA label → ontology; "1" = present, "-1" = absent; "—" = left unknown):

=====================  ==========================================================
CelebA                 ontology
=====================  ==========================================================
Black/Blond/Brown/     hair_color black/blond/brown/gray when exactly one is 1;
Gray_Hair              none or several → —
Straight/Wavy_Hair     hair_type straight/wavy when exactly one is 1, else —
Long_Hair (CelebV-HQ)  hair_length long if 1, else —
Receding_Hairline      hairline receding if 1, else —
Bangs, Bald            bangs, bald (bald ⇒ hair colour/type/hairline n/a)
Goatee, No_Beard       beard True if Goatee; False if No_Beard; else True unless
                       5_o_Clock_Shadow explains the missing "No_Beard" (then —)
5_o_Clock_Shadow,      five_o_clock_shadow, mustache, sideburns
Mustache, Sideburns
Eyeglasses             glasses eyeglasses if 1 (CelebA's label also covers sunglasses),
                       none if -1; CelebV-HQ's Sunglasses → glasses sunglasses
Wearing_Hat/Earrings/  hat, earrings, necklace, lipstick; Wearing_Mask → face_mask
Necklace/Lipstick
Heavy_Makeup           makeup
Male                   gender male / female
Young                  age young if 1, else — (middle-aged or old)
Pale_Skin              skin_tone pale if 1, else —
Rosy_Cheeks            rosy_cheeks
Bags_Under_Eyes        bags_under_eyes
Big_Nose               nose_size big if 1, else —
Pointy_Nose            pointy_nose
Big_Lips               lips full if 1, else —
Narrow_Eyes            narrow_eyes
Bushy_Eyebrows         bushy_eyebrows
Arched_Eyebrows        eyebrow_shape arched if 1, else —
Oval_Face              face_shape oval if 1, else —
Double_Chin            double_chin
High_Cheekbones        high_cheekbones
Smiling                smile
Mouth_Slightly_Open    mouth_open
Attractive, Blurry,    not mapped (no ontology attribute)
Chubby, Wearing_Necktie
=====================  ==========================================================
"""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import UserError
from .common import Item

ATTR_FILES = (
    "list_attr_celeba.txt",
    "Anno/list_attr_celeba.txt",
    "CelebAMask-HQ-attribute-anno.txt",
)
IMAGE_DIRS = (
    "img_align_celeba",
    "Img/img_align_celeba",
    "CelebA-HQ-img",
    "img_celeba",
    "Img/img_celeba",
    "images",
    ".",
)
PARTITION_FILES = ("list_eval_partition.txt", "Eval/list_eval_partition.txt")
HQ_MAPPING = "CelebA-HQ-to-CelebA-mapping.txt"
CAPTION_DIR = "celeba-caption"
PARTITION_SPLITS = {"0": "train", "1": "val", "2": "test"}

# Binary CelebA labels that map one-to-one onto a binary ontology attribute.
DIRECT: dict[str, str] = {
    "bangs": "bangs",
    "bald": "bald",
    "5oclockshadow": "five_o_clock_shadow",
    "mustache": "mustache",
    "sideburns": "sideburns",
    "wearinghat": "hat",
    "wearingearrings": "earrings",
    "wearingnecklace": "necklace",
    "wearinglipstick": "lipstick",
    "heavymakeup": "makeup",
    "rosycheeks": "rosy_cheeks",
    "bagsundereyes": "bags_under_eyes",
    "pointynose": "pointy_nose",
    "narroweyes": "narrow_eyes",
    "bushyeyebrows": "bushy_eyebrows",
    "doublechin": "double_chin",
    "highcheekbones": "high_cheekbones",
    "smiling": "smile",
    "mouthslightlyopen": "mouth_open",
    "wearingmask": "face_mask",
}
# Labels that name one value of a categorical attribute when present (absent → unknown).
POSITIVE_ONLY: dict[str, tuple[str, str]] = {
    "young": ("age", "young"),
    "paleskin": ("skin_tone", "pale"),
    "bignose": ("nose_size", "big"),
    "biglips": ("lips", "full"),
    "archedeyebrows": ("eyebrow_shape", "arched"),
    "ovalface": ("face_shape", "oval"),
    "recedinghairline": ("hairline", "receding"),
    "longhair": ("hair_length", "long"),
}
# Mutually exclusive groups: the value when exactly one of the labels is present.
EXCLUSIVE: dict[str, dict[str, str]] = {
    "hair_color": {
        "blackhair": "black",
        "blondhair": "blond",
        "blondehair": "blond",
        "brownhair": "brown",
        "grayhair": "gray",
        "greyhair": "gray",
    },
    "hair_type": {"straighthair": "straight", "wavyhair": "wavy"},
}
UNMAPPED = ("attractive", "blurry", "chubby", "wearingnecktie")


def norm_name(name: str) -> str:
    """Canonical label key: lower case, letters and digits only (Blonde_Hair → blondehair)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def map_celeba_attributes(flags: dict[str, bool]) -> dict:
    """CelebA-style binary labels (any spelling, e.g. ``Blond_Hair``) → partial ontology
    labels. Only labels present in ``flags`` are used; see the module table."""
    f = {norm_name(k): bool(v) for k, v in flags.items()}
    out: dict = {}
    for key, attr in DIRECT.items():
        if key in f:
            out[attr] = f[key]
    for key, (attr, value) in POSITIVE_ONLY.items():
        if f.get(key):
            out[attr] = value
    for attr, names in EXCLUSIVE.items():
        on = {v for k, v in names.items() if f.get(k)}
        if len(on) == 1:
            out[attr] = on.pop()
    if "male" in f:
        out["gender"] = "male" if f["male"] else "female"
    if f.get("goatee"):
        out["beard"] = True
    elif f.get("nobeard"):
        out["beard"] = False
    elif "nobeard" in f and not f.get("5oclockshadow"):
        out["beard"] = True
    if f.get("sunglasses"):
        out["glasses"] = "sunglasses"
    elif f.get("eyeglasses"):
        out["glasses"] = "eyeglasses"
    elif "eyeglasses" in f:
        out["glasses"] = "none"
    return out


def _find(root: Path, names: tuple[str, ...], what: str, fix: str) -> Path:
    for n in names:
        if (root / n).is_file():
            return root / n
    raise UserError(f"no {what} in {root} (looked for {', '.join(names)}); {fix}")


def parse_attr_file(path: Path) -> tuple[list[str], list[tuple[str, dict[str, bool]]], int]:
    """``list_attr_celeba.txt`` → (names, [(filename, {name: present})], bad line count)."""
    lines = path.read_text(errors="replace").splitlines()
    if len(lines) < 2:
        raise UserError(
            f"{path} is not a CelebA attribute file (needs a count line and a "
            "names line); re-download list_attr_celeba.txt"
        )
    names = lines[1].split()
    rows, bad = [], 0
    for line in lines[2:]:
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1 or any(v not in ("1", "-1", "0") for v in parts[1:]):
            bad += 1
            continue
        rows.append((parts[0], {n: v == "1" for n, v in zip(names, parts[1:], strict=True)}))
    return names, rows, bad


def _partition(root: Path) -> dict[str, str]:
    """filename → split from ``list_eval_partition.txt`` (CelebA-HQ names via the mapping)."""
    part_file = next((root / n for n in PARTITION_FILES if (root / n).is_file()), None)
    if part_file is None:
        return {}
    part = {}
    for line in part_file.read_text(errors="replace").splitlines():
        p = line.split()
        if len(p) == 2 and p[1] in PARTITION_SPLITS:
            part[p[0]] = PARTITION_SPLITS[p[1]]
    hq = root / HQ_MAPPING
    if hq.is_file():  # "idx orig_idx orig_file": CelebA-HQ image idx.jpg is CelebA's orig_file
        for line in hq.read_text(errors="replace").splitlines()[1:]:
            p = line.split()
            if len(p) >= 3 and p[2] in part:
                part[f"{p[0]}.jpg"] = part[p[2]]
    return part


def scan_celeba(root: str | Path) -> tuple[list[Item], dict]:
    """Items of a CelebA / CelebA-HQ folder (labels only; pixels are read by the writer)."""
    root = Path(root)
    attr_file = _find(
        root,
        ATTR_FILES,
        "CelebA attribute file",
        "pass the folder holding list_attr_celeba.txt as --root",
    )
    img_dir = next(
        (
            root / d
            for d in IMAGE_DIRS
            if (root / d).is_dir() and d != "." and any((root / d).iterdir())
        ),
        root,
    )
    names, rows, bad = parse_attr_file(attr_file)
    part = _partition(root)
    cap_dir = root / CAPTION_DIR
    items = []
    for fname, flags in rows:
        caption = ""
        if cap_dir.is_dir() and (cap := cap_dir / f"{Path(fname).stem}.txt").is_file():
            caption = (cap.read_text(errors="replace").strip().splitlines() or [""])[0].strip()
        items.append(
            Item(
                id=Path(fname).stem,
                file=str((img_dir / fname).relative_to(root)),
                image=img_dir / fname,
                labels=map_celeba_attributes(flags),
                caption=caption,
                split=part.get(fname),
            )
        )
    notes = {
        "label_file": str(attr_file.relative_to(root)),
        "image_dir": str(img_dir.relative_to(root)),
        "attributes": len(names),
        "bad_label_lines": bad,
        "partition": "list_eval_partition" if part else "hash",
        "unmapped": [n for n in names if norm_name(n) in UNMAPPED],
    }
    return items, notes
