"""Exact resume: a run SIGKILLed at a random moment (or inside a checkpoint write) and resumed
repeats the uninterrupted run's per-step losses and final weights bit for bit (CPU, one thread,
bf16 autocast, dropout + random masking from the global RNG, EMA, gradient accumulation and
epoch roll-over all on)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_toy import parse, run_toy

from unif2ace.train.checkpoint import find_latest, list_checkpoints, load_tensors
from unif2ace.train.metrics import read_jsonl

SCRIPT = str(Path(__file__).with_name("train_toy.py"))
STEPS = 24
COMMON = [
    "--steps",
    str(STEPS),
    "--batch",
    "8",
    "--micro",
    "4",
    "--ckpt-every",
    "4",
    "--autocast",
    "bf16",
    "--noise",
    "--ema",
    "0.9",
]


def _run_in_process(out: Path, extra: list[str] = ()) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses (also for the module-scoped reference)
    try:
        run_toy(parse(["--out", str(out), *COMMON, *extra]))
    finally:
        torch.set_num_threads(threads)


def _losses(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]


def _final(out: Path) -> dict[str, torch.Tensor]:
    ckpt = find_latest(out)
    assert ckpt is not None and ckpt.name == f"step-{STEPS:08d}"
    return {
        **load_tensors(ckpt / "model.safetensors"),
        **{f"ema.{k}": v for k, v in load_tensors(ckpt / "ema.safetensors").items()},
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref")
    _run_in_process(out)
    return out


def _assert_same_run(out: Path, ref: Path) -> None:
    got, want = _losses(out), _losses(ref)
    assert [s for s, _ in want] == list(range(1, STEPS + 1))
    assert got == want  # exact float equality, step by step
    a, b = _final(out), _final(ref)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _signal_mid_run(out: Path, sig: int, delay: float) -> subprocess.CompletedProcess:
    """Start a training subprocess, wait for its first checkpoint, wait ``delay`` s, signal."""
    proc = subprocess.Popen(
        [sys.executable, SCRIPT, "--out", str(out), *COMMON, "--sleep", "0.02"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 60
        while find_latest(out) is None:  # wait for the first checkpoint
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.time() < deadline
            time.sleep(0.01)
        time.sleep(delay)  # ~STEPS·2·0.02 s = 1 s of training in total
        assert proc.poll() is None, "training finished before the signal; make it longer"
        os.kill(proc.pid, sig)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout)


def test_sigkill_at_random_moment_then_resume_is_bitwise_identical(tmp_path, reference):
    rng = random.Random(int(os.environ.get("UNIF2ACE_KILL_SEED", "5")))
    out = tmp_path / "run"
    done = _signal_mid_run(out, signal.SIGKILL, rng.uniform(0.0, 0.6))
    assert done.returncode == -signal.SIGKILL
    killed_at = int(find_latest(out).name.split("-")[1])
    assert 0 < killed_at < STEPS
    _run_in_process(out)
    _assert_same_run(out, reference)


def test_sigterm_checkpoints_the_current_step_then_resume_is_identical(tmp_path, reference):
    out = tmp_path / "run"
    done = _signal_mid_run(out, signal.SIGTERM, 0.3)
    assert done.returncode == 0 and "stopped by a signal" in done.stdout
    stopped_at = int(find_latest(out).name.split("-")[1])
    assert 0 < stopped_at < STEPS
    _run_in_process(out)
    _assert_same_run(out, reference)


def test_sigkill_inside_a_checkpoint_write_then_resume_is_bitwise_identical(tmp_path, reference):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--out", str(out), *COMMON, "--die-in-save", "12"], timeout=120
    )
    assert proc.returncode == -signal.SIGKILL
    root = out / "checkpoints"
    assert [p.name for p in root.iterdir() if p.name.startswith(".tmp-step-00000012")]
    assert find_latest(out).name == "step-00000008"  # the half-written step 12 is ignored
    assert [p.name for p in list_checkpoints(out)] == ["step-00000004", "step-00000008"]
    _run_in_process(out)
    _assert_same_run(out, reference)
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]  # cleaned up
    assert [p.name for p in list_checkpoints(out)] == ["step-00000020", "step-00000024"]
    assert (find_latest(out) / "tokenizer.txt").read_text() == "toy"
