"""The LLM-judge (Desc / Conv) scores through a local OpenAI-compatible server."""

import math
import re

import pytest
from chat_server import chat_reply

from unif2ace.cli import main
from unif2ace.eval.llm import ChatBackend
from unif2ace.eval.metrics import conv_scores, desc_scores, llm_judge, parse_score


@pytest.mark.parametrize(
    "reply, score",
    [
        ("Score: 7", 7),
        ("score = 10/10", 10),
        ("**Score:** 9", 9),
        ("The candidate misses the earrings.\nScore: 4", 4),
        ("8", 8),
        ("Score: 6.5", 6.5),
        ("Score: 0", None),
        ("Score: 11", None),
        ("I would rate it highly.", None),
        ("", None),
    ],
)
def test_parse_score(reply, score):
    assert parse_score(reply) == score


def _field(prompt: str, name: str) -> str:
    m = re.search(rf"{name}:?\n?(.*?)(?:\n|$)", prompt)
    return m.group(1).strip() if m else ""


def _rule_judge(body):
    """10 when the candidate repeats the reference, 3 otherwise; a reply without a score
    when the candidate is 'SKIP'."""
    prompt = body["messages"][0]["content"]
    if "Candidate answer:" in prompt:
        ref, cand = _field(prompt, "Reference answer"), _field(prompt, "Candidate answer")
    else:
        ref = prompt.split("Reference:\n", 1)[1].split("\n\nCandidate:", 1)[0]
        cand = prompt.split("Candidate:\n", 1)[1].split("\n\nRate", 1)[0]
    if cand == "SKIP":
        return chat_reply("I cannot grade this.")
    return chat_reply("Score: 10" if cand == ref else "Score: 3")


def test_desc_and_conv_scores_count_and_average(server):
    srv = server(_rule_judge)
    be = ChatBackend(srv.url, "judge-1")
    d = desc_scores(be, ["A man.", "A woman.", "SKIP"], ["A man.", "A man.", "A child."])
    assert d.scores == [10, 3, None] and d.mean == 6.5 and (d.n, d.unparsed) == (2, 1)
    qa = [
        {"question": "Is he smiling?", "answer": "Yes", "reference": "Yes"},
        {"question": "Hair colour?", "answer": "red", "reference": "black"},
    ]
    c = conv_scores(be, qa)
    assert c.scores == [10, 3]
    _, _, body = srv.requests[-1]
    prompt = body["messages"][0]["content"]
    assert "Hair colour?" in prompt and "black" in prompt and "red" in prompt
    assert body["model"] == "judge-1" and body["temperature"] == 0.0
    everything = llm_judge(
        be,
        [{"caption": "A man.", "reference": "A man.", "qa": qa}],
    )
    assert everything["desc"] == {"mean": 10.0, "n": 1, "unparsed": 0}
    assert everything["conv"]["mean"] == 6.5 and everything["judge_model"] == "judge-1"
    empty = desc_scores(be, [], [])
    assert math.isnan(empty.mean) and empty.n == 0


def test_understanding_eval_with_the_llm_judge(tiny_recipe, server):
    from unif2ace.eval.evaluate import EvalConfig, evaluate_understanding
    from unif2ace.pipeline import FacePipeline

    srv = server(_rule_judge)
    pipe = FacePipeline.from_pretrained(tiny_recipe / "model")
    cfg = EvalConfig(num=3, llm_faces=2, batch_size=4)
    res = evaluate_understanding(
        pipe, str(tiny_recipe / "data"), "test", cfg, ChatBackend(srv.url, "judge-1")
    )
    j = res["metrics"]["llm_judge"]
    n_qa = sum(len(e["qa"]) for e in res["examples"][:2])
    assert j["desc"]["n"] + j["desc"]["unparsed"] == 2
    assert j["conv"]["n"] + j["conv"]["unparsed"] == n_qa
    assert len(srv.requests) == 2 + n_qa
    assert 1.0 <= j["desc"]["mean"] <= 10.0


def test_eval_cli_checks_llm_options(tmp_path, capsys):
    base = ["eval", "--data", str(tmp_path), "--judge", str(tmp_path)]
    assert main([*base, "--llm-url", "http://127.0.0.1:9/v1", "--llm-faces", "0"]) == 2
    assert "--llm-faces" in capsys.readouterr().err
    assert main([*base, "--llm-url", "ftp://x", "--llm-model", "m"]) == 2
    assert "--llm-url" in capsys.readouterr().err
    argv = [*base, "--llm-url", "http://127.0.0.1:9/v1", "--llm-model", "m", "--no-understanding"]
    assert main(argv) == 2
    assert "--no-understanding" in capsys.readouterr().err
