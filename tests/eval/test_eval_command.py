"""``unif2ace eval`` on a tiny trained model and judge, and the pieces it is made of."""

import json
import math

import pytest
import torch

from unif2ace.cli import main
from unif2ace.data.shards import decode_image
from unif2ace.demo import test_records as demo_records
from unif2ace.errors import UserError
from unif2ace.eval.evaluate import prompted_attributes, yes_no_question
from unif2ace.eval.intervals import point_values
from unif2ace.pipeline import FacePipeline, SamplingDefaults


@pytest.fixture(scope="module")
def fx(tiny_recipe):
    out = tiny_recipe
    return {"model": out / "model", "data": out / "data", "judge": out / "judge"}


def test_prompted_attributes_drop_what_the_prompt_itself_hides():
    asked = prompted_attributes("a man with blue eyes wearing sunglasses and a beard")
    assert asked["glasses"] == "sunglasses" and asked["beard"] is True
    assert "eye_color" not in asked  # sunglasses hide the eyes: not judgeable


def test_yes_no_questions_and_their_answers():
    assert yes_no_question("beard", True, "male") == ("Does he have a beard?", "Yes")
    assert yes_no_question("earrings", False, "female") == ("Is she wearing earrings?", "No")
    q, a = yes_no_question("hair_color", "red", "female")
    assert q.startswith("Is her hair") and "red" in q and a == "Yes"
    assert yes_no_question("gender", "male", None) == ("Is this a man?", "Yes")
    assert yes_no_question("smile", True, None)[0] == "Are they smiling?"


def test_answer_probability_is_a_batch_independent_distribution(fx):
    pipe = FacePipeline.from_pretrained(fx["model"])
    faces = [decode_image(r["image"]) for r in demo_records(3)]
    qs = ["Is he smiling?", "Is her hair red?", "Does she wear earrings?"]
    yes = pipe.answer_probability(faces, qs, ["Yes"] * 3)
    no = pipe.answer_probability(faces, qs, ["No"] * 3)
    for y, n in zip(yes, no, strict=True):
        assert 0.0 < y < 1.0 and 0.0 < n < 1.0 and y + n <= 1.0 + 1e-6
    one = [pipe.answer_probability([f], [q], ["Yes"])[0] for f, q in zip(faces, qs, strict=True)]
    torch.testing.assert_close(torch.tensor(yes), torch.tensor(one), atol=2e-2, rtol=0)
    with pytest.raises(UserError, match="one of each"):
        pipe.answer_probability(faces, qs[:2], ["Yes"] * 3)


def test_answer_probability_is_the_teacher_forced_probability_of_the_trained_answer_ids(fx):
    """The scored answer is the token string training puts after a question (the answer with
    a leading space; for Yes/No the space is its own token), and its log-probability (one
    left-padded forward per batch) equals the sum of the cached decoder's next-token
    log-probabilities, token by token. Scoring the bare word (as before) measured a token
    the model is never trained to emit first."""
    from unif2ace.data.sequences import encode_answer
    from unif2ace.model import answer_logprob, generate_text

    pipe = FacePipeline.from_pretrained(fx["model"])
    tok = pipe.text_tokenizer
    faces = [decode_image(r["image"]) for r in demo_records(3)]
    qs = [
        tok.encode(q) for q in ("Is he smiling?", "Is her hair red?", "What colour are her eyes?")
    ]
    ans = [encode_answer(tok, a) for a in ("Yes", "No", "Dark brown, almost black")]
    assert tok.decode(ans[0][:1]) == " " and len(ans[0]) == 2 and len(ans[2]) > 2
    codes, feats = pipe.encode_images(faces)
    with torch.no_grad():
        got = answer_logprob(pipe.model, pipe.layout, codes, qs, ans, encoder_feats=feats)
    want = []
    for i in range(3):
        f = None if feats is None else {n: v[i : i + 1] for n, v in feats.items()}
        logp = 0.0
        for k in range(len(ans[i])):
            res = generate_text(pipe.model, pipe.layout, codes[i : i + 1], [qs[i] + ans[i][:k]],
                                max_new_tokens=1, encoder_feats=f, return_logits=True)  # fmt: skip
            logp += float(res.logits_BSV[0, 0].float().log_softmax(-1)[ans[i][k]])
        want.append(logp)
    torch.testing.assert_close(got, torch.tensor(want), atol=2e-3 * max(map(len, ans)), rtol=1e-3)
    probs = pipe.answer_probability(faces, ["Is he smiling?"] * 3, ["Yes"] * 3, batch_size=2)
    yes = answer_logprob(pipe.model, pipe.layout, codes, [qs[0]] * 3, [ans[0]] * 3, feats).exp()
    torch.testing.assert_close(torch.tensor(probs), yes, atol=1e-4, rtol=1e-3)


def test_masked_code_nll_is_per_row_and_counts_only_masked_codes(fx):
    from unif2ace.eval.evaluate import masked_code_nll

    pipe = FacePipeline.from_pretrained(fx["model"])
    recs = demo_records(3)
    codes, _ = pipe.encode_images([decode_image(r["image"]) for r in recs])
    # prompts of different lengths: the short ones are padded in the batch
    ids = pipe.text_tokenizer.encode_batch(["a man", "a smiling woman with long red hair", ""])
    mask = torch.rand(codes.shape[1], generator=torch.Generator().manual_seed(0)) < 0.5
    nll = masked_code_nll(pipe, codes, ids, mask)
    assert nll.shape == (3,) and bool((nll > 0).all())
    alone = torch.cat(
        [masked_code_nll(pipe, codes[i : i + 1], ids[i : i + 1], mask) for i in range(3)]
    )
    torch.testing.assert_close(nll, alone, atol=0.5, rtol=5e-3)  # bf16 autocast
    none = masked_code_nll(pipe, codes, ids, torch.zeros_like(mask))
    assert none.tolist() == [0.0, 0.0, 0.0]


def test_prompt_gap_is_zero_for_identical_prompts_and_matches_a_reference(fx):
    import torch.nn.functional as F

    from unif2ace.eval.evaluate import prompt_gap

    pipe = FacePipeline.from_pretrained(fx["model"])
    recs = demo_records(3)
    faces = [decode_image(r["image"]) for r in recs]
    same = prompt_gap(pipe, faces, ["a smiling woman"] * 3)
    assert same["gap"] == 0.0 and same["ce_own_prompt"] == same["ce_other_prompt"]
    res = prompt_gap(pipe, faces, [r["prompts"][0] for r in recs], ratio=1.0)
    assert res["masked_ratio"] == 1.0 and res["n"] == 3
    # Fully masked, the own-prompt CE is what the sampler's first step sees: compare with the
    # prompt-cached denoiser the sampler uses.
    from unif2ace.model.denoiser import make_image_denoiser

    codes, _ = pipe.encode_images(faces)
    K = pipe.layout.codebook_size
    own = [pipe.text_tokenizer.encode(r["prompts"][0]) for r in recs]
    den = make_image_denoiser(pipe.model, pipe.layout, own)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = den(torch.full_like(codes, K), torch.ones(3))
    ref = float(F.cross_entropy(logits.float().reshape(-1, K), codes.reshape(-1)))
    assert abs(ref - res["ce_own_prompt"]) < 0.05
    with pytest.raises(UserError, match="at least 2"):
        prompt_gap(pipe, faces[:1], ["a man"])


def test_eval_cli_writes_json_and_report(fx, tmp_path, capsys):
    argv = [
        "eval",
        "--checkpoint",
        str(fx["model"]),
        "--data",
        str(fx["data"]),
        "--judge",
        str(fx["judge"]),
        "--num",
        "2",
        "--fid-real",
        "2",
        "--diversity-prompts",
        "2",
        "--diversity-samples",
        "2",
        "--steps",
        "2",
        "--json",
        str(tmp_path / "m.json"),
        "--report",
        str(tmp_path / "report"),
    ]
    assert main(argv) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert set(m["summary"]) == {"test", "test_heldout"}
    # the decoding the numbers were measured with: the --steps override, the text rule
    assert m["decoding"]["image_sampler"]["num_steps"] == 2
    assert m["decoding"]["text"]["no_repeat_ngram"] == SamplingDefaults().no_repeat_ngram
    for split, s in m["summary"].items():
        g = m["splits"][split]["generation"]
        assert 0.0 <= s["generation_fidelity"] <= 1.0 and g["fidelity"]["n"] > 0
        assert s["fid"] >= 0.0 and 0.0 <= s["vqa_score"] <= 1.0
        assert 0.0 < s["vqa_accuracy_blind"] < 1.0
        assert math.isfinite(s["prompt_gap_nats"]) and s["denoise_ce_nats"] > 0
        assert m["splits"][split]["understanding"]["vqa"]["n"] == 16  # 2 faces x 8 questions
    for split, ci in m["ci95"].items():  # bootstrap intervals over the 2 faces
        s = m["summary"][split]
        units = m["splits"][split]["units"]
        assert len(units["ids"]) == 2 and len(units["vqa"]) == 2
        for k, v in point_values(units).items():  # the units reproduce the summary
            assert v == pytest.approx(s[k], nan_ok=True), k
        assert s["vqa_minus_blind"] == pytest.approx(s["vqa_accuracy"] - s["vqa_accuracy_blind"])
        keys = {"generation_fidelity", "vqa_score", "kid", "caption_attribute_f1", "cider_d",
                "vqa_accuracy", "vqa_accuracy_blind", "vqa_minus_blind"}  # fmt: skip
        assert keys <= set(ci) <= set(s)
        for k, (lo, hi) in ci.items():
            assert math.isnan(lo) or lo - 1e-9 <= s[k] <= hi + 1e-9, k
    report = (tmp_path / "report" / "REPORT.md").read_text()
    assert "## test_heldout" in report and "generation_fidelity" in report
    assert "95 % bootstrap intervals" in report
    assert "blind baseline, the question alone" in report
    for name in ("fidelity_test.png", "generated_test.png", "described_test_heldout.png"):
        assert (tmp_path / "report" / name).is_file(), name
    # the same evaluation compared with itself: paired differences of exactly 0
    out = tmp_path / "diff.json"
    assert main(["eval-compare", str(tmp_path / "m.json"), str(tmp_path / "m.json"),
                 "--json", str(out)]) == 0  # fmt: skip
    diff = json.loads(out.read_text())
    assert set(diff) == {"test", "test_heldout"}
    for d in diff["test"].values():  # (caption F1 is nan when 2 tiny-model captions claim nothing)
        assert (math.isnan(d["diff"]) or d["diff"] == 0) and not d["beyond_noise"]
    assert "generation_fidelity" in diff["test"] and "vqa_minus_blind" in diff["test"]
    out_text = capsys.readouterr().out
    assert "differs:" not in out_text and "do not cover the training run" in out_text
    # with a control seed: a column per control, and nothing beyond seed noise at 0
    assert main(["eval-compare", str(tmp_path / "m.json"), str(tmp_path / "m.json"),
                 "--control", str(tmp_path / "m.json"), "--json", str(out)]) == 0  # fmt: skip
    assert "after − control 1" in capsys.readouterr().out
    for d in json.loads(out.read_text())["test"].values():
        assert len(d["vs_controls"]) == 1 and not d["beyond_seed_noise"]
    # the same faces decoded another way: the header names what changed
    other = json.loads((tmp_path / "m.json").read_text())
    other["decoding"]["text"]["no_repeat_ngram"] = 99
    (tmp_path / "m2.json").write_text(json.dumps(other))
    assert main(["eval-compare", str(tmp_path / "m.json"), str(tmp_path / "m2.json")]) == 0
    differ = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("differs:")]
    assert differ == [f"differs: text.no_repeat_ngram {SamplingDefaults().no_repeat_ngram} -> 99"]
    # an evaluation older than the decoding record: one line says so, no line per setting
    del other["decoding"]
    (tmp_path / "m3.json").write_text(json.dumps(other))
    assert main(["eval-compare", str(tmp_path / "m3.json"), str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "differs:" not in out and f"decoding: not recorded in {tmp_path / 'm3.json'}" in out


def test_beyond_seed_noise_needs_every_interval_on_one_side():
    from unif2ace.eval.intervals import beyond_seed_noise

    up = {"ci95": [0.01, 0.05]}
    assert beyond_seed_noise(up, [{"ci95": [0.02, 0.04]}, {"ci95": [0.001, 0.1]}])
    assert not beyond_seed_noise(up, [{"ci95": [0.02, 0.04]}, {"ci95": [-0.01, 0.03]}])
    assert not beyond_seed_noise(up, [{"ci95": [-0.05, -0.01]}])  # the control went further
    assert beyond_seed_noise({"ci95": [-0.3, -0.1]}, [{"ci95": [-0.2, -0.05]}])
    assert beyond_seed_noise(up, []) and not beyond_seed_noise({"ci95": [-0.1, 0.1]}, [])


def test_eval_without_a_judge_says_how_to_get_one(fx, tmp_path, capsys):
    argv = [
        "eval",
        "--checkpoint",
        str(fx["model"]),
        "--data",
        str(fx["data"]),
        "--judge",
        str(tmp_path / "nope"),
        "--num",
        "1",
    ]
    assert main(argv) == 2
    assert "unif2ace train judge" in capsys.readouterr().err


def test_attribute_survival_of_a_lossless_tokenizer_is_one(fx):
    from types import SimpleNamespace

    from unif2ace.eval.judge import load_judge
    from unif2ace.eval.survival import attribute_survival

    lossless = SimpleNamespace(
        config=SimpleNamespace(resolution=32), encode=lambda x: x, decode=lambda c: c
    )
    judge = load_judge(fx["judge"])
    res = attribute_survival(lossless, judge, str(fx["data"]), "test", num=2)
    assert res["images"] == 2 and res["reconstructed"] == res["original"]
    assert all(v["reconstructed"] == v["original"] for v in res["per_attribute"].values())
    blurred = SimpleNamespace(
        config=SimpleNamespace(resolution=32), encode=lambda x: x * 0, decode=lambda c: c
    )
    flat = attribute_survival(blurred, judge, str(fx["data"]), "test", num=2)
    assert flat["images"] == 2 and set(flat["fine"]) <= set(flat["per_attribute"])
