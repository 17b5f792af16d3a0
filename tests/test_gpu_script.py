"""``scripts/train_small_gpu.sh`` (the one-shot run for a lent GPU) works end to end: here on
the CPU, with 40 faces, batch 2 and a freshly initialised small tokenizer standing in for
the bundled one; its packed output restores to a model folder the pipeline loads."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_script_trains_and_packs_a_loadable_model(tmp_path):
    from unif2ace.pipeline import FacePipeline
    from unif2ace.tokenizer.autoencoder import build_tokenizer

    torch.manual_seed(0)
    build_tokenizer("small").save_pretrained(tmp_path / "tok")
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "WORK": str(tmp_path / "work"), "NUM": "40",
           "WORKERS": "1", "BATCH": "2", "MAX_STEPS": "2", "PROBE_STEPS": "4",
           "TOKENIZER": str(tmp_path / "tok"), "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # fmt: skip
    r = subprocess.run(["bash", "scripts/train_small_gpu.sh", "loss.w_mmu=0.5"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    parts = sorted(out.glob("model.tar.part-*"))
    assert parts and all(p.stat().st_size <= 15 * 2**20 for p in parts)
    assert len(list(out.iterdir())) <= 8  # what a device call brings back
    assert "EMA decay 0.00000" in (out / "steps.log").read_text()  # 2 steps: no EMA lag
    packed = tmp_path / "model.tar"
    packed.write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(packed) as t:
        t.extractall(tmp_path / "restored", filter="data")
    pipe = FacePipeline.from_pretrained(tmp_path / "restored" / "model")
    assert pipe.model is not None
    assert "run: 2 steps" in (out / "steps.log").read_text()  # sized, then capped
    assert '"w_mmu": 0.5' in (out / "run_config.json").read_text()
