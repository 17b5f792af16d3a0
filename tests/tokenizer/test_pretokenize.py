import pyarrow.parquet as pq
import pytest
import torch
from tok_helpers import write_synthetic_shards

from unif2ace.data.shards import list_shards
from unif2ace.errors import UserError
from unif2ace.tokenizer.autoencoder import build_tokenizer
from unif2ace.tokenizer.images import png_to_tensor
from unif2ace.tokenizer.pretokenize import codes_dir, load_codes, pretokenize, tokenizer_hash


@pytest.fixture
def setup(tmp_path):
    data = tmp_path / "data"
    write_synthetic_shards(data, "train", shards=2, rows=3)
    write_synthetic_shards(data, "test", shards=1, rows=2, seed=1)
    torch.manual_seed(0)
    model = build_tokenizer("tiny").eval()
    model.save_pretrained(tmp_path / "tok")
    return data, tmp_path / "tok", model


def test_codes_match_direct_encoding_and_resume(setup, tmp_path):
    data, tok, model = setup
    logs = []
    s1 = pretokenize(tok, data, batch_size=2, log=logs.append)
    assert s1["splits"] == ["test", "train"] and s1["shards_encoded"] == 3
    # codes folders are invisible to list_shards
    assert [p.name for p in list_shards(data, "train")] == [
        "shard-00000.parquet",
        "shard-00001.parquet",
    ]
    codes = load_codes(data, "train", tok)
    assert len(codes) == 6
    rows = pq.read_table(list_shards(data, "train")[1], columns=["id", "image"]).to_pylist()
    x = torch.stack([png_to_tensor(r["image"], 32) for r in rows])
    direct = model.encode(x)
    for r, c in zip(rows, direct, strict=True):
        assert torch.equal(codes[r["id"]], c)
    # second run: everything skipped (resumable); deleting one file re-encodes just it
    assert pretokenize(tok, data, log=logs.append)["shards_skipped"] == 3
    h = tokenizer_hash(tok)
    (codes_dir(data, "train", h) / "shard-00001.parquet").unlink()
    with pytest.raises(UserError):
        load_codes(data, "train", h)
    s3 = pretokenize(tok, data, splits=["train"], log=logs.append)
    assert s3["shards_encoded"] == 1 and load_codes(data, "train", h).keys() == codes.keys()


def test_different_tokenizer_never_reuses_codes(setup, tmp_path):
    data, tok, _ = setup
    pretokenize(tok, data, log=lambda s: None)
    torch.manual_seed(1)
    build_tokenizer("tiny").save_pretrained(tmp_path / "tok2")
    assert tokenizer_hash(tmp_path / "tok2") != tokenizer_hash(tok)
    with pytest.raises(UserError):
        load_codes(data, "train", tmp_path / "tok2")


def test_device_auto_encodes_what_cpu_does_and_unknown_devices_fail(setup, tmp_path):
    data, tok, _ = setup
    pretokenize(tok, data, splits=["train"], log=lambda s: None)
    cpu = load_codes(data, "train", tok)
    for d in codes_dir(data, "train", tokenizer_hash(tok)).glob("*.parquet"):
        d.unlink()
    pretokenize(tok, data, splits=["train"], log=lambda s: None, device="auto")
    again = load_codes(data, "train", tok)
    assert again.keys() == cpu.keys()
    if not torch.cuda.is_available():  # auto fell back to the CPU: identical codes
        assert all(torch.equal(again[k], cpu[k]) for k in cpu)
        with pytest.raises(UserError, match="not available"):
            pretokenize(tok, data, device="cuda", log=lambda s: None)
    with pytest.raises(UserError, match="not available"):
        pretokenize(tok, data, device="tpu", log=lambda s: None)
