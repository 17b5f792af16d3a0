"""A 2-process gloo run (DDP, launched like torchrun) equals a 1-process run with the same
global batch (1 process: micro 4 × accumulation 2; 2 processes: micro 4 each)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_toy import parse, run_toy

from unif2ace.train.checkpoint import find_latest, load_tensors
from unif2ace.train.distributed import DistInfo, parallelize, print0, setup_distributed
from unif2ace.train.metrics import read_jsonl

SCRIPT = str(Path(__file__).with_name("train_toy.py"))
ARGS = ["--steps", "10", "--batch", "8", "--micro", "4", "--ckpt-every", "5"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(out: Path, world: int, args: list[str], expect: int = 0) -> None:
    """Start ``world`` ranks with torchrun's environment variables and wait for them."""
    port = _free_port()
    procs = []
    for rank in range(world):
        env = {
            **os.environ,
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        procs.append(subprocess.Popen([sys.executable, SCRIPT, "--out", str(out), *args], env=env))
    try:
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [expect] * world


def _weights(out: Path, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
    return load_tensors(find_latest(out) / name)


@pytest.mark.parametrize("parallel", ["ddp", pytest.param("fsdp", marks=pytest.mark.slow)])
def test_two_gloo_processes_match_one_process(tmp_path, parallel):
    two = tmp_path / "two"
    _launch(two, 2, [*ARGS, "--parallel", parallel])
    one = tmp_path / "one"
    run_toy(parse(["--out", str(one), *ARGS]))
    rows1 = [r for r in read_jsonl(one / "metrics.jsonl") if "loss" in r]
    rows2 = [r for r in read_jsonl(two / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in rows1] == [r["step"] for r in rows2] == list(range(1, 11))
    for a, b in zip(rows1, rows2, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)
        assert a["acc"] == pytest.approx(b["acc"], abs=1e-6)
        assert a["tokens"] == b["tokens"] and a["samples"] == b["samples"]
    assert rows1[-1]["loss"] < rows1[0]["loss"]  # it trained
    w1, w2 = _weights(one), _weights(two)
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-4, atol=1e-5, msg=k)


def test_single_process_fallback(monkeypatch, capsys):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = setup_distributed("cpu")
    assert info == DistInfo(0, 1, 0, torch.device("cpu"), True)
    model = torch.nn.Linear(2, 2)
    assert parallelize(model, info, "auto") is model
    print0("hello")
    assert capsys.readouterr().out == "hello\n"
    monkeypatch.setenv("RANK", "1")
    print0("hidden")
    assert capsys.readouterr().out == ""


@pytest.mark.slow  # ~40 s each on 2 shared cores (3 launches of 2 processes)
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_process_crash_and_resume_is_bitwise_identical(tmp_path, parallel):
    """DDP and FSDP2 (fully_shard over gloo): a crash after the step-3 checkpoint, resumed,
    repeats the uninterrupted 2-process run exactly (dropout + masking RNG per rank, EMA)."""
    args = [
        "--steps",
        "8",
        "--batch",
        "8",
        "--micro",
        "2",
        "--ckpt-every",
        "3",
        "--noise",
        "--ema",
        "0.9",
        "--parallel",
        parallel,
    ]
    _launch(tmp_path / "ref", 2, args)
    run = tmp_path / "run"
    _launch(run, 2, [*args, "--exit-after-calls", "10"], expect=3)  # dies inside step 6
    assert find_latest(run).name == "step-00000003"
    _launch(run, 2, args)
    ref_rows = read_jsonl(tmp_path / "ref" / "metrics.jsonl")
    got_rows = read_jsonl(run / "metrics.jsonl")
    assert [(r["step"], r["loss"]) for r in got_rows] == [(r["step"], r["loss"]) for r in ref_rows]
    assert len(ref_rows) == 8
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = _weights(run, name), _weights(tmp_path / "ref", name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
