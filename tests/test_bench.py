"""``unif2ace bench --quick``: every key present, values sane, the CLI path and its JSON."""

from __future__ import annotations

import json

import pytest
import torch

from unif2ace import cli
from unif2ace.bench import bench_config, matmul_peak, run_bench, summary, timed
from unif2ace.errors import UserError
from unif2ace.model import model_preset, training_flops_per_token

SUMMARY_KEYS = {
    "matmul_bf16_tflops",
    "matmul_fp32_tflops",
    "train_bf16_tokens_per_s",
    "train_fp32_tokens_per_s",
    "train_bf16_mfu",
    "train_fp32_mfu",
    "train_bf16_over_fp32",
    "generate_images_per_s",
    "generate_images_per_s_uncached",
    "generate_flop_limit_fraction",
    "prompt_cache_speedup",
    "caption_b1_tokens_per_s",
    "caption_b1_tokens_per_s_uncached",
    "caption_batched_tokens_per_s",
    "caption_batched_tokens_per_s_uncached",
    "kv_cache_speedup_b1",
    "kv_cache_speedup_batched",
    "train_peak_rss_mb",
    "peak_rss_mb",
}


@pytest.fixture(scope="module")
def quick_result():
    before = torch.get_num_threads()
    try:
        return run_bench(bench_config(quick=True), threads=1)
    finally:
        torch.set_num_threads(before)


def test_quick_has_every_key_with_sane_values(quick_result):
    res = quick_result
    s = res["summary"]
    assert set(s) == SUMMARY_KEYS
    for key, value in s.items():
        assert isinstance(value, float) and value > 0, key
    assert 0 < s["train_bf16_mfu"] < 1.5 and 0 < s["train_fp32_mfu"] < 1.5
    assert 0 < s["generate_flop_limit_fraction"] < 1.5
    assert s["train_bf16_over_fp32"] == pytest.approx(
        s["train_bf16_tokens_per_s"] / s["train_fp32_tokens_per_s"], rel=1e-2
    )
    env = res["env"]
    assert env["torch"] == torch.__version__ and env["torch_threads"] == 1
    assert len(env["load_avg_start"]) == 3 and len(env["load_avg_end"]) == 3
    assert env["cpu_model"]


def test_quick_sections_record_counts_and_work(quick_result):
    bc = bench_config(quick=True)
    tr, ge, ca = quick_result["train"], quick_result["generate"], quick_result["caption"]
    assert tr["seq_len"] == bc.text_len + 2 + bc.image_tokens
    assert tr["bf16"]["repeats"] == bc.train_repeats and tr["fp32"]["repeats"] == bc.fp32_repeats
    # the head is computed over the K image codes only, and so are its FLOPs
    cfg = model_preset("tiny")
    assert tr["flops_per_token"] == training_flops_per_token(cfg, bc.codebook_size, tr["seq_len"])
    # guidance on: one network call per step, every step run; same calls with and without cache
    assert ge["cached"]["network_calls"] == ge["uncached"]["network_calls"] == bc.gen_steps
    # eos is suppressed, so every row decodes exactly new_tokens tokens
    assert ca["b1_cached"]["tokens"] == ca["b1_uncached"]["tokens"] == bc.new_tokens
    n_batched = bc.caption_batch * bc.new_tokens
    assert ca["batched_cached"]["tokens"] == ca["batched_uncached"]["tokens"] == n_batched
    assert ca["prefix_len"] == 4 + bc.image_tokens + bc.question_len
    for sec in (tr["bf16"], tr["fp32"], ge, ca):
        assert sec["peak_rss_mb"] > 0


def test_summary_is_json_serialisable(quick_result):
    again = json.loads(json.dumps(quick_result))
    assert summary(again) == quick_result["summary"]


def test_timed_counts_runs_and_excludes_warmup():
    calls = []
    t = timed(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5 and t["repeats"] == 3 and 0 <= t["min_s"] <= t["median_s"]


def test_matmul_peak_reports_both_dtypes():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        mm = matmul_peak((64, 128), repeats=1, work=1e7)
    finally:
        torch.set_num_threads(before)
    for name in ("bf16", "fp32"):
        assert set(mm["by_size"][name]) == {"64", "128"}
        assert mm[f"{name}_tflops"] == max(mm["by_size"][name].values()) > 0
    assert mm["threads"] == 1


def test_cli_quick_child_process_writes_json(tmp_path):
    """The command path: re-runs itself with the malloc settings, JSON on stdout and in OUT."""
    out = tmp_path / "bench.json"
    rc = cli.main(["bench", "--quick", "--threads", "1", "--json", str(out), "--json-only"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert set(res["summary"]) == SUMMARY_KEYS
    assert all(v is not None for v in res["env"]["malloc_env"].values())


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserError, match="preset"):
        bench_config("huge")
    assert cli.main(["bench", "--quick", "--threads", "0", "--no-malloc-env"]) == 2
