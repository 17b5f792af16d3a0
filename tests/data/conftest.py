"""Tiny fixtures in the real formats of the data sets the importers read.

Each builder writes a few small generated images (plus one corrupt file and one missing file)
and the label files exactly as the public releases lay them out.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

# CelebA's 40 attribute names, in list_attr_celeba.txt's order.
CELEBA_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses "
    "Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache "
    "Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks "
    "Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young"
).split()
# CelebV-HQ's appearance (40) and action (35) names, as in celebvhq_info.json's meta_info.
CELEBVHQ_APPEARANCE = (
    "Blurry Male Young Chubby Pale_Skin Rosy_Cheeks Oval_Face Receding_Hairline Bald Bangs "
    "Black_Hair Blonde_Hair Gray_Hair Brown_Hair Straight_Hair Wavy_Hair Long_Hair "
    "Arched_Eyebrows Bushy_Eyebrows Bags_Under_Eyes Eyeglasses Sunglasses Narrow_Eyes Big_Nose "
    "Pointy_Nose High_Cheekbones Big_Lips Double_Chin No_Beard 5_o_Clock_Shadow Goatee "
    "Mustache Sideburns Heavy_Makeup Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Wearing_Mask"
).split()
CELEBVHQ_ACTIONS = (
    "blow chew close_eyes cough cry drink eat frown gaze glare head_wagging kiss laugh "
    "listen_to_music look_around make_a_face nod play_instrument read shake_head shout sigh "
    "sing sleep smile smoke sneer sneeze sniff talk turn weep whisper wink yawn"
).split()

# Positive CelebA labels of the six fixture rows (everything else is -1).
CELEBA_ROWS = {
    "000001.jpg": {
        "Arched_Eyebrows",
        "Brown_Hair",
        "Heavy_Makeup",
        "High_Cheekbones",
        "No_Beard",
        "Smiling",
        "Wavy_Hair",
        "Wearing_Earrings",
        "Wearing_Lipstick",
        "Young",
        "Mouth_Slightly_Open",
    },
    "000002.jpg": {
        "Male",
        "Bald",
        "Gray_Hair",
        "Goatee",
        "5_o_Clock_Shadow",
        "Eyeglasses",
        "Big_Nose",
        "Double_Chin",
    },
    "000003.jpg": {
        "Male",
        "Black_Hair",
        "Blond_Hair",
        "Straight_Hair",
        "Mustache",
        "Young",
        "Wearing_Hat",
        "Pale_Skin",
        "Narrow_Eyes",
    },
    "000004.jpg": {"No_Beard", "Young"},  # corrupt image
    "000005.jpg": {"No_Beard", "Blond_Hair", "Bangs", "Oval_Face", "Big_Lips", "Rosy_Cheeks"},
    "000006.jpg": {"Male", "No_Beard"},  # image missing
}
CELEBA_PARTITION = {
    "000001.jpg": 0,
    "000002.jpg": 0,
    "000003.jpg": 0,
    "000004.jpg": 0,
    "000005.jpg": 1,
    "000006.jpg": 2,
}


def face_image(seed: int, w: int = 40, h: int = 48) -> Image.Image:
    """A small deterministic picture: gradient plus seeded noise and a bright centre blob."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, np.full((h, w), 128.0)], -1)
    blob = ((x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 4) ** 2)[..., None] * 90
    img = np.clip(base + blob + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(img)


def image_bytes(seed: int, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    face_image(seed, **kw).save(buf, format=fmt)
    return buf.getvalue()


CORRUPT = b"\xff\xd8\xff\xe0 this is not really a jpeg"


@pytest.fixture
def celeba_root(tmp_path: Path) -> Path:
    root = tmp_path / "celeba"
    img_dir = root / "img_align_celeba"
    img_dir.mkdir(parents=True)
    lines = [str(len(CELEBA_ROWS)), " ".join(CELEBA_NAMES) + " "]
    for i, (fname, pos) in enumerate(CELEBA_ROWS.items()):
        vals = " ".join(f"{1 if n in pos else -1:2d}" for n in CELEBA_NAMES)
        lines.append(f"{fname} {vals}")
        if fname == "000004.jpg":
            (img_dir / fname).write_bytes(CORRUPT)
        elif fname != "000006.jpg":
            (img_dir / fname).write_bytes(image_bytes(i, "JPEG", w=44, h=54))
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{f} {p}\n" for f, p in CELEBA_PARTITION.items())
    )
    return root


def _clip(appearance: set[str], actions: set[str], emotion: dict, bbox: dict) -> dict:
    return {
        "ytb_id": "abcdefghijk",
        "duration": {"start_sec": 1.0, "end_sec": 4.5},
        "bbox": bbox,
        "attributes": {
            "appearance": [int(n in appearance) for n in CELEBVHQ_APPEARANCE],
            "action": [int(n in actions) for n in CELEBVHQ_ACTIONS],
            "emotion": emotion,
        },
        "version": "v0.1",
    }


@pytest.fixture
def celebvhq_root(tmp_path: Path) -> Path:
    root = tmp_path / "celebvhq"
    (root / "frames").mkdir(parents=True)
    (root / "videos").mkdir()
    box = {"top": 0.1, "bottom": 0.6, "left": 0.2, "right": 0.6}
    clips = {
        "M2Ohb0FAaJU_1": _clip(
            {"Male", "Young", "Black_Hair", "Sunglasses", "No_Beard"},
            {"talk", "smile"},
            {"sep_flag": False, "labels": "happy"},
            box,
        ),
        "_0tf2n3rlJU_0": _clip(
            {"Blonde_Hair", "Long_Hair", "Wearing_Mask", "Heavy_Makeup"},
            {"close_eyes"},
            {
                "sep_flag": True,
                "labels": [
                    {"emotion": "neutral", "start_sec": 0, "end_sec": 0.28},
                    {"emotion": "surprise", "start_sec": 1.28, "end_sec": 3.28},
                ],
            },
            box,
        ),
        "zzVideoOnly_3": _clip({"Male"}, set(), {"sep_flag": False, "labels": "anger"}, box),
    }
    info = {
        "meta_info": {
            "appearance_mapping": CELEBVHQ_APPEARANCE,
            "action_mapping": CELEBVHQ_ACTIONS,
        },
        "clips": clips,
    }
    (root / "celebvhq_info.json").write_text(json.dumps(info))
    (root / "frames" / "M2Ohb0FAaJU_1.jpg").write_bytes(image_bytes(10, "JPEG", w=64, h=48))
    (root / "frames" / "_0tf2n3rlJU_0.png").write_bytes(image_bytes(11, w=50, h=50))
    (root / "videos" / "zzVideoOnly_3.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    return root


@pytest.fixture
def unif2ace_root(tmp_path: Path) -> Path:
    """A JSONL, a JSON and a parquet file of UniF²ace-style records in one folder."""
    import base64

    root = tmp_path / "unif2ace"
    (root / "images").mkdir(parents=True)
    for i in range(3):
        (root / "images" / f"f{i}.png").write_bytes(image_bytes(20 + i))
    (root / "images" / "bad.jpg").write_bytes(CORRUPT)
    jsonl = [
        {
            "id": "j0",
            "image": "images/f0.png",
            "caption": "A young woman with wavy brown hair.",
            "qa": [{"question": "Is she smiling?", "answer": "Yes.", "category": "action"}],
        },
        {"id": "j1", "image": "images/missing.png", "caption": "Missing.", "qa": []},
        {
            "id": "j2",
            "image_path": "images/f1.png",
            "text": "A man with a beard.",
            "qas": [{"q": "Does he wear glasses?", "a": "No."}],
            "split": "test",
        },
    ]
    (root / "part1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in jsonl))
    uri = "data:image/png;base64," + base64.b64encode(image_bytes(23)).decode()
    records = [
        {
            "image": "images/f2.png",
            "caption": "An old man.",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat colour is his hair?"},
                {"from": "gpt", "value": "Gray."},
                {"from": "human", "value": "Is he wearing a hat?"},
                {"from": "gpt", "value": "No, he is not."},
            ],
        },
        {
            "id": "uri0",
            "image": uri,
            "caption": "Embedded as a data URI.",
            "attributes": {"smile": True, "hair_color": "blond", "not_an_attribute": 1},
        },
        {"id": "bad0", "image": "images/bad.jpg", "caption": "Corrupt image."},
    ]
    (root / "part2.json").write_text(json.dumps(records))
    table = pa.table(
        {
            "id": ["p0", "p1", "p2"],
            "image": [
                {"bytes": image_bytes(30), "path": "p0.png"},
                {"bytes": image_bytes(31, "JPEG"), "path": "p1.jpg"},
                {"bytes": CORRUPT, "path": "p2.jpg"},
            ],
            "caption": ["Parquet face zero.", "Parquet face one.", "Parquet face two."],
            "qa": [[{"question": "Eyes closed?", "answer": "No."}], [], []],
        }
    )
    pq.write_table(table, root / "part3.parquet", row_group_size=2)
    return root


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    root = tmp_path / "faces"
    (root / "sub").mkdir(parents=True)
    (root / "a.jpg").write_bytes(image_bytes(40, "JPEG", w=60, h=40))
    (root / "sub" / "b.png").write_bytes(image_bytes(41, w=30, h=70))
    (root / "c.jpg").write_bytes(CORRUPT)
    (root / "e.png").write_bytes(image_bytes(42))
    caps = [
        {"file": "a.jpg", "caption": "Face a."},
        {"file": "sub/b.png", "caption": "Face b."},
        {"file": "d.jpg", "caption": "No such file."},
    ]
    (root / "captions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in caps))
    return root
