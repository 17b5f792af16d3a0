"""The CUDA path agrees with the CPU path (run with ``pytest -m gpu`` on a machine with a GPU;
skipped elsewhere): the first thing to run on a lent GPU, before a long job."""

from pathlib import Path

import pytest
import torch

from unif2ace.data.faceforge.build import build_dataset
from unif2ace.data.shards import list_shards
from unif2ace.tokenizer.autoencoder import LFQAutoencoder, build_tokenizer
from unif2ace.tokenizer.pretokenize import encode_shard, load_codes, pretokenize
from unif2ace.tokenizer.text import iter_corpus, train_text_tokenizer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gpu")
    build_dataset(root / "data", preset="tiny", num=16, progress=False)
    torch.manual_seed(0)
    build_tokenizer("tiny").save_pretrained(root / "imgtok")
    train_text_tokenizer(iter_corpus(root / "data"), 400).save(root / "texttok")
    return {"root": root, "data": root / "data", "imgtok": root / "imgtok",
            "texttok": root / "texttok"}  # fmt: skip


def test_pretokenize_on_cuda_gives_the_cpu_codes(fx):
    pretokenize(fx["imgtok"], fx["data"], splits=["train"], log=lambda s: None, device="cuda")
    gpu = load_codes(fx["data"], "train", fx["imgtok"])
    cpu_tok = LFQAutoencoder.from_pretrained(fx["imgtok"])
    for shard in list_shards(fx["data"], "train"):
        ids, codes = encode_shard(cpu_tok, shard, 8, False)
        same = torch.stack([gpu[i] for i in ids]) == codes
        assert same.float().mean() > 0.99  # fp32 on both; only sign-boundary latents differ


def test_training_steps_on_cuda_match_the_cpu(fx, tmp_path):
    from unif2ace.train.metrics import read_jsonl
    from unif2ace.train.unified import load_run_config, train_model

    losses = {}
    for device in ("cpu", "cuda"):
        cfg = load_run_config("tiny", [
            f"data.data={fx['data']}", f"data.image_tokenizer={fx['imgtok']}",
            f"data.text_tokenizer={fx['texttok']}", "train.steps=3", "train.log_every=1",
            "train.autocast=none", "train.prefetch=2", f"train.device={device}",
        ])  # fmt: skip
        train_model(cfg, tmp_path / device, verbose=False)
        rows = [r for r in read_jsonl(tmp_path / device / "metrics.jsonl") if "loss" in r]
        losses[device] = [r["loss"] for r in rows]
    assert len(losses["cuda"]) == 3
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=2e-2)  # fp32; kernels differ


def test_pipeline_generates_and_describes_on_cuda(fx, tmp_path):
    from unif2ace.pipeline import FacePipeline
    from unif2ace.train.unified import load_run_config, train_model

    cfg = load_run_config("tiny", [
        f"data.data={fx['data']}", f"data.image_tokenizer={fx['imgtok']}",
        f"data.text_tokenizer={fx['texttok']}", "train.steps=2", "train.ckpt_every=2",
    ])  # fmt: skip
    train_model(cfg, tmp_path / "run", verbose=False)
    pipe = FacePipeline.from_pretrained(tmp_path / "run", device="cuda")
    images = pipe.generate(["a smiling woman", "a man with a beard"], num_steps=4, seed=0)
    assert len(images) == 2 and images[0].size[0] == pipe.image_tokenizer.config.resolution
    text = pipe.describe(images[0], max_new_tokens=8)
    assert isinstance(text, str)
