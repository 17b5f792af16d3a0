"""The CUDA path agrees with the CPU path (run with ``pytest -m gpu`` on a machine with a GPU;
skipped elsewhere): the first thing to run on a lent GPU, before a long job."""

import os
import shutil
from pathlib import Path

import pytest
import torch

from unif2ace.data.faceforge.build import build_dataset
from unif2ace.tokenizer.autoencoder import build_tokenizer
from unif2ace.tokenizer.pretokenize import load_codes, pretokenize
from unif2ace.tokenizer.text import iter_corpus, train_text_tokenizer
from unif2ace.vocab import Modality, Task

# UNIF2ACE_TEST_DEVICE=cpu runs the same comparisons CPU against CPU (checks the tests)
DEV = os.environ.get("UNIF2ACE_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEV == "cuda" and not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gpu")
    build_dataset(root / "data", preset="tiny", num=16, progress=False)
    torch.manual_seed(0)
    build_tokenizer("tiny").save_pretrained(root / "imgtok")
    train_text_tokenizer(iter_corpus(root / "data"), 400).save(root / "texttok")
    pretokenize(root / "imgtok", root / "data", splits=["train"], log=lambda s: None)  # CPU
    return {"root": root, "data": root / "data", "imgtok": root / "imgtok",
            "texttok": root / "texttok"}  # fmt: skip


def test_pretokenize_on_cuda_gives_the_cpu_codes(fx, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(fx["data"], data, ignore=shutil.ignore_patterns("codes-*"))
    pretokenize(fx["imgtok"], data, splits=["train"], log=lambda s: None, device=DEV)
    gpu = load_codes(data, "train", fx["imgtok"])
    cpu = load_codes(fx["data"], "train", fx["imgtok"])
    same = torch.stack([gpu[i] == cpu[i] for i in cpu])
    assert same.float().mean() > 0.999  # true fp32 on both (TF32 off): sign-boundary latents


def test_training_steps_on_cuda_match_the_cpu(fx, tmp_path):
    from unif2ace.train.metrics import read_jsonl
    from unif2ace.train.unified import load_run_config, train_model

    losses = {}
    for role, device in (("ref", "cpu"), ("dev", DEV)):
        cfg = load_run_config("tiny", [
            f"data.data={fx['data']}", f"data.image_tokenizer={fx['imgtok']}",
            f"data.text_tokenizer={fx['texttok']}", "train.steps=3", "train.log_every=1",
            "train.autocast=none", "train.prefetch=2", f"train.device={device}",
        ])  # fmt: skip
        train_model(cfg, tmp_path / role, verbose=False)
        rows = [r for r in read_jsonl(tmp_path / role / "metrics.jsonl") if "loss" in r]
        losses[role] = [r["loss"] for r in rows]
    assert len(losses["dev"]) == 3
    assert losses["dev"] == pytest.approx(losses["ref"], rel=2e-2)  # fp32; kernels differ


def test_pipeline_generates_and_describes_on_cuda(fx, tmp_path):
    from unif2ace.pipeline import FacePipeline
    from unif2ace.train.unified import load_run_config, train_model

    cfg = load_run_config("tiny", [
        f"data.data={fx['data']}", f"data.image_tokenizer={fx['imgtok']}",
        f"data.text_tokenizer={fx['texttok']}", "train.steps=2", "train.ckpt_every=2",
    ])  # fmt: skip
    train_model(cfg, tmp_path / "run", verbose=False)
    pipes = {role: FacePipeline.from_pretrained(tmp_path / "run", device=d, dtype=torch.float32)
             for role, d in (("ref", "cpu"), ("dev", DEV))}  # fmt: skip
    dev = pipes["dev"]
    images = dev.generate(["a smiling woman", "a man with a beard"], num_steps=4, seed=0)
    assert len(images) == 2 and images[0].size[0] == dev.image_tokenizer.config.resolution
    assert isinstance(dev.describe(images[0], max_new_tokens=8)[0], str)
    # the same forward on both devices: logits of a mixed text/image sequence agree
    layout = pipes["ref"].layout
    g = torch.Generator().manual_seed(0)
    text = torch.randint(0, layout.image_offset, (2, 6), generator=g)
    image = layout.codes_to_ids(torch.randint(0, layout.codebook_size, (2, 16), generator=g))
    ids = torch.cat([text, image], 1)
    modality = torch.cat(
        [torch.full((2, 6), Modality.TEXT), torch.full((2, 16), Modality.IMAGE)], 1
    )
    task = torch.tensor([Task.T2I, Task.MMU])
    logits = {}
    for role, pipe in pipes.items():
        d = next(pipe.model.parameters()).device
        with torch.no_grad():
            out = pipe.model(ids.to(d), modality.to(d), task.to(d), torch.full((2,), 0.5, device=d))
        logits[role] = out.logits_BTV.float().cpu()
    assert torch.allclose(logits["ref"], logits["dev"], atol=2e-3, rtol=2e-3)
