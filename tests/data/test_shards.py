import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from unif2ace.atomic import write_json_atomic
from unif2ace.data import shards
from unif2ace.data.dataset import FaceShardDataset
from unif2ace.errors import UserError


def _records(n, split="train"):
    img = Image.new("RGB", (8, 8), (10, 20, 30))
    png = shards.encode_png(img)
    return [
        {
            "id": f"r{i}",
            "split": split,
            "image": png,
            "width": 8,
            "height": 8,
            "attributes": {"bangs": bool(i % 2)},
            "caption": f"face {i}",
            "prompts": [f"p{i}"],
            "vqa": [
                {
                    "question": "q?",
                    "answer": "yes",
                    "category": "appearance",
                    "kind": "yes_no",
                    "attribute": "bangs",
                }
            ],
        }
        for i in range(n)
    ]


def test_write_is_atomic_deterministic_and_readable_by_pandas(tmp_path):
    d1 = shards.write_shard(shards.shard_path(tmp_path, "train", 0), _records(5))
    d2 = shards.write_shard(tmp_path / "copy.parquet", _records(5))
    assert d1 == d2  # same records -> byte-identical file
    assert not list(tmp_path.rglob("*.tmp"))
    df = pd.read_parquet(tmp_path / "train")
    assert list(df["id"]) == [f"r{i}" for i in range(5)]
    rec = next(shards.iter_records(tmp_path, "train"))
    assert shards.labels_of(rec) == {"bangs": False}
    assert shards.decode_image(rec["image"]).size == (8, 8)
    assert rec["vqa"][0]["answer"] == "yes"


def test_corrupt_image_and_missing_folder_give_user_errors(tmp_path):
    with pytest.raises(UserError, match="corrupt image"):
        shards.decode_image(b"not a png")
    with pytest.raises(UserError, match="does not exist"):
        shards.list_shards(tmp_path / "nope", "train")
    with pytest.raises(UserError, match="not a unif2ace data set"):
        shards.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(UserError, match="corrupt"):
        shards.read_manifest(tmp_path)


@pytest.mark.parametrize("world,workers,shuffle", [(1, 1, False), (2, 1, True), (3, 2, True)])
def test_rank_and_worker_sharding_covers_every_record_exactly_once(
    tmp_path, world, workers, shuffle
):
    import torch.utils.data as tud

    sizes = [7, 5, 9]
    i = 0
    for k, n in enumerate(sizes):
        recs = _records(n)
        for r in recs:
            r["id"] = f"r{i}"
            i += 1
        shards.write_shard(shards.shard_path(tmp_path, "train", k), recs)
    seen = []
    for rank in range(world):
        ds = FaceShardDataset(
            tmp_path, "train", columns=["id"], shuffle=shuffle, seed=3, rank=rank, world_size=world
        )
        dl = tud.DataLoader(ds, batch_size=None, num_workers=workers if workers > 1 else 0)
        seen += [r["id"] for r in dl]
    assert sorted(seen) == sorted(f"r{j}" for j in range(sum(sizes)))
    if shuffle:  # a different epoch gives a different order, the same set
        ds = FaceShardDataset(tmp_path, "train", columns=["id"], shuffle=True, seed=3)
        a = [r["id"] for r in ds]
        ds.set_epoch(1)
        b = [r["id"] for r in ds]
        assert a != b and sorted(a) == sorted(b)


def test_manifest_json_roundtrip(tmp_path):
    write_json_atomic(tmp_path / "manifest.json", {"a": 1})
    assert shards.read_manifest(tmp_path) == {"a": 1}
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"a": 1}
    assert np.isfinite(1.0)
