"""The UniF²ace training task: mixed-task data, the unified loss, resume, CLI and overfitting.

Fixtures: a tiny FaceForge set (16 records), an untrained tiny image tokenizer with its
pretokenised codes, a byte-level BPE trained on the set's text; all built once per module.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from unif2ace.cli import main
from unif2ace.config import from_dict, to_dict
from unif2ace.data.faceforge.build import build_dataset
from unif2ace.data.sequences import build_mmu, collate, encode_answer
from unif2ace.data.shards import iter_records
from unif2ace.errors import UserError
from unif2ace.model import build_model, make_image_denoiser
from unif2ace.tokenizer.autoencoder import build_tokenizer
from unif2ace.tokenizer.pretokenize import pretokenize
from unif2ace.tokenizer.text import iter_corpus, train_text_tokenizer
from unif2ace.train.checkpoint import find_latest
from unif2ace.train.metrics import read_jsonl
from unif2ace.train.task import (
    TASKS,
    MixedTaskData,
    RunConfig,
    VQABalance,
    build_training_model,
    record_generator,
    record_to_sequence,
    unified_loss,
)
from unif2ace.train.unified import (
    build_initial_model,
    load_run_config,
    load_trained,
    prepare,
    read_checkpoint_config,
    train_model,
)
from unif2ace.vocab import Modality, Task, VocabLayout


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("unified")
    build_dataset(root / "data", preset="tiny", num=16, progress=False)
    torch.manual_seed(0)
    build_tokenizer("tiny").save_pretrained(root / "imgtok")
    pretokenize(root / "imgtok", root / "data", splits=["train"], log=lambda s: None)
    train_text_tokenizer(iter_corpus(root / "data"), 400).save(root / "texttok")
    return {"data": root / "data", "imgtok": root / "imgtok", "texttok": root / "texttok"}


def _flags(fx) -> list[str]:
    return [
        f"data.data={fx['data']}",
        f"data.image_tokenizer={fx['imgtok']}",
        f"data.text_tokenizer={fx['texttok']}",
    ]


def _cfg(fx, *overrides: str) -> RunConfig:
    return load_run_config("tiny", _flags(fx) + list(overrides))


def _first_batch(cfg: RunConfig, epoch: int = 0) -> tuple[dict, object]:
    layout, tok, _, codes = prepare(cfg)
    data = MixedTaskData(cfg.data, layout, tok, codes, cfg.train.micro_batch_size, 0)
    return next(iter(data(epoch, 0))), layout


def test_one_step_gives_finite_loss_with_every_component(fx):
    cfg = _cfg(fx, "train.micro_batch_size=8", "train.batch_size=8")
    batch, layout = _first_batch(cfg)
    tasks = set(batch["task_B"].tolist())
    assert tasks == {int(Task.T2I), int(Task.MMU)}, "seed 0 mixes both tasks"
    torch.manual_seed(0)
    model = build_model(cfg.model, layout)
    res = unified_loss(model, batch, layout, cfg.loss)
    for k in ("t2i", "mask", "score", "mask_acc", "mmu", "text_acc", "balance", "seq_balance"):
        assert k in res.metrics and math.isfinite(res.metrics[k]), k
    assert res.seq_balance > 0  # the sequence routers' balance loss is in
    assert 0 <= res.metrics["seq_off_copy_t2i"] <= 1 and 0 <= res.metrics["seq_off_copy_mmu"] <= 1
    want = res.t2i + res.mmu + cfg.loss.balance * res.balance
    want = want + cfg.loss.seq_balance * res.seq_balance
    torch.testing.assert_close(res.loss, want)
    res.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.encoders["semantic"].proj.weight.grad is not None  # MMU images reach them
    assert res.n_tokens == int((batch["modality_BT"] != int(Modality.PAD)).sum())


def test_caption_and_vqa_text_weights_split_the_token_mean(fx):
    """kind_B marks each row's task; w_caption / w_vqa weigh its targets in the text loss
    (normalised by the number of targets, so 1 / 1 is the plain mean and the loss is linear
    in the two weights); the per-task CEs are logged and bracket the mean."""
    from dataclasses import replace

    from unif2ace.data.sequences import CAPTION_INSTRUCTION, decode_sequence

    cfg = _cfg(fx, "train.micro_batch_size=8", "train.batch_size=8", "data.t2i=0.2",
               "data.caption=0.4", "data.vqa=0.4")  # fmt: skip
    batch, layout = _first_batch(cfg)
    tok = prepare(cfg)[1]
    kinds = batch["kind_B"].tolist()
    assert {TASKS.index("caption"), TASKS.index("vqa")} <= set(kinds), "seed 0 mixes both"
    for ids, kind in zip(batch["ids_BT"], kinds, strict=True):
        d = decode_sequence(layout, ids)
        if kind == TASKS.index("t2i"):
            assert d.task == Task.T2I
        else:
            assert d.task == Task.MMU
            is_caption = tok.decode(d.text_ids).startswith(CAPTION_INSTRUCTION)
            assert is_caption == (kind == TASKS.index("caption"))
    torch.manual_seed(0)
    model = build_model(cfg.model, layout)

    def text_loss(w_caption: float, w_vqa: float):
        loss = replace(cfg.loss, w_t2i=0.0, balance=0.0, seq_balance=0.0, w_caption=w_caption,
                       w_vqa=w_vqa)  # fmt: skip
        with torch.no_grad():
            return unified_loss(model, batch, layout, loss)

    one = text_loss(1.0, 1.0)
    cap, vqa = text_loss(1.0, 0.0), text_loss(0.0, 1.0)
    torch.testing.assert_close(one.loss, one.mmu)
    torch.testing.assert_close(cap.loss + vqa.loss, one.loss)
    torch.testing.assert_close(text_loss(3.0, 0.5).loss, 3 * cap.loss + 0.5 * vqa.loss)
    m = one.metrics
    assert min(m["mmu_caption"], m["mmu_vqa"]) < m["mmu"] < max(m["mmu_caption"], m["mmu_vqa"])
    assert cap.metrics["mmu"] == m["mmu"]  # the logged mean is the unweighted one


def test_padding_never_enters_the_loss(fx):
    cfg = _cfg(fx, "train.micro_batch_size=8", "train.batch_size=8")
    batch, layout = _first_batch(cfg)
    pad = batch["modality_BT"] == int(Modality.PAD)
    assert pad.any() and not (batch["loss_mask_BT"] & pad).any()
    torch.manual_seed(0)
    model = build_model(cfg.model, layout)
    ref = unified_loss(model, batch, layout, cfg.loss).loss
    # Other ids on padding, and 7 more padding columns: the loss must not move.
    g = torch.Generator().manual_seed(1)
    noise = torch.randint(0, layout.size, batch["ids_BT"].shape, generator=g)
    changed = {**batch, "ids_BT": torch.where(pad, noise, batch["ids_BT"])}
    wider = dict(batch)
    for k, fill in (("ids_BT", layout.pad_id), ("modality_BT", int(Modality.PAD))):
        wider[k] = torch.cat([batch[k], torch.full((len(batch[k]), 7), fill)], 1)
    for k in ("loss_mask_BT", "image_mask_BT"):
        wider[k] = torch.cat([batch[k], torch.zeros(len(batch[k]), 7, dtype=torch.bool)], 1)
    for other in (changed, wider):
        got = unified_loss(model, other, layout, cfg.loss).loss
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


def _record(fx) -> dict:
    return next(iter_records(fx["data"], "train"))


def test_prompt_dropout_rate_and_task_mix_follow_the_config(fx):
    cfg = _cfg(fx, "data.t2i=0.6", "data.caption=0.2", "data.vqa=0.2", "data.prompt_dropout=0.1")
    layout, tok, _, codes = prepare(cfg)
    rec = _record(fx)
    n, t2i, dropped = 3000, 0, 0
    for i in range(n):
        _, seq = record_to_sequence(
            cfg.data, layout, tok, rec, codes[rec["id"]], record_generator(0, 0, i)
        )
        t2i += seq.task == Task.T2I
        dropped += seq.prompt_dropped
    assert abs(t2i / n - 0.6) < 4 * math.sqrt(0.24 / n)
    assert abs(dropped / t2i - 0.1) < 4 * math.sqrt(0.09 / t2i)
    # a record's sequence is a pure function of (seed, epoch, index)
    a = record_to_sequence(cfg.data, layout, tok, rec, codes[rec["id"]], record_generator(3, 1, 5))
    b = record_to_sequence(cfg.data, layout, tok, rec, codes[rec["id"]], record_generator(3, 1, 5))
    assert a == b


def test_t2i_caption_share_of_generation_rows_is_worded_by_the_caption(fx):
    from unif2ace.data.sequences import decode_sequence

    rec = _record(fx)
    n = 400

    def texts(p: float) -> tuple[list[list[int]], object]:
        cfg = _cfg(fx, "data.t2i=1", "data.caption=0", "data.vqa=0", "data.prompt_dropout=0",
                   f"data.t2i_caption={p}")  # fmt: skip
        cfg.data.max_text_len = 1000
        layout, tok, _, codes = prepare(cfg)
        rows = [
            record_to_sequence(
                cfg.data, layout, tok, rec, codes[rec["id"]], record_generator(0, 0, i)
            )[1]
            for i in range(n)
        ]
        return [decode_sequence(layout, r.ids).text_ids for r in rows], tok

    never, tok = texts(0.0)
    always, _ = texts(1.0)
    half, _ = texts(0.5)
    caption = tok.encode(rec["caption"])
    prompts = [tok.encode(x) for x in rec["prompts"]]
    assert caption not in prompts
    assert all(t in prompts for t in never) and len({tuple(t) for t in never}) == len(prompts)
    assert all(t == caption for t in always)
    worded = [t == caption for t in half]
    assert abs(sum(worded) / n - 0.5) < 4 * math.sqrt(0.25 / n)
    # the prompt is drawn first: a row that keeps a prompt keeps the one p = 0 drew
    assert all(h == z for h, z, c in zip(half, never, worded, strict=True) if not c)
    with pytest.raises(UserError, match="t2i_caption"):
        _cfg(fx, "data.t2i_caption=1.5").data.task_probs()


def _qa(attr: str, answer: str) -> dict:
    return {"question": f"Q {attr}?", "answer": answer, "kind": "yes_no", "attribute": attr}


def test_vqa_balance_equalises_each_questions_answers():
    # 8 records: "moles" answered No 6 times, Yes twice; "wink" No 7 times, can't tell once.
    recs = [{"vqa": [_qa("moles", "Yes" if i < 2 else "No"), _qa("wink", "No")]} for i in range(8)]
    recs[0]["vqa"][1] = _qa("wink", "I can't tell: her eyes are covered by sunglasses.")
    bal = VQABalance.from_records(recs, alpha=1.0)
    w = {k: bal.weight[k] for k in bal.weight}
    assert w[("moles", "yes")] == pytest.approx(8 / (2 * 2)) and w[("moles", "no")] == 8 / 12
    # each question's answers now carry equal total weight
    assert 2 * w[("moles", "yes")] == pytest.approx(6 * w[("moles", "no")])
    assert w[("wink", "<cant_tell>")] == pytest.approx(4.0)  # 8 / (2 * 1), under the cap
    half = VQABalance.from_records(recs, alpha=0.5)
    assert half.weight[("moles", "yes")] == pytest.approx(2.0**0.5)
    flat = VQABalance.from_records(recs, alpha=0.0)
    assert set(flat.weight.values()) == {1.0}
    assert bal.weights([_qa("moles", "YES."), _qa("hat", "Yes")]).tolist() == [2.0, 1.0]
    with pytest.raises(UserError, match="no"):
        VQABalance.from_records([{"vqa": []}])


def test_vqa_balance_config_draws_the_rarer_answer_more_often(fx):
    cfg = _cfg(fx, "data.t2i=0", "data.caption=0", "data.vqa=1")
    layout, tok, _, codes = prepare(cfg)
    rec = {"id": _record(fx)["id"], "vqa": [_qa("moles", "Yes"), _qa("hat", "No")]}
    bal = VQABalance({("moles", "yes"): 1, ("moles", "no"): 9, ("hat", "no"): 5}, alpha=1.0)
    yes_id = tok.encode(" Yes")

    def share(balance) -> float:
        n = 2000
        hits = sum(
            record_to_sequence(
                cfg.data, layout, tok, rec, codes[rec["id"]], record_generator(0, 0, i), balance
            )[1].ids[-1 - len(yes_id) : -1]
            == yes_id
            for i in range(n)
        )
        return hits / n

    # weights 10 / (2 * 1) = 5 (the cap) and 1: Yes is drawn 5/6 of the time, not 1/2
    assert abs(share(None) - 0.5) < 0.05
    assert abs(share(bal) - 5 / 6) < 0.05
    with pytest.raises(UserError, match="vqa_balance"):
        _cfg(fx, "data.vqa_balance=2").data.task_probs()
    data = MixedTaskData(_cfg(fx, "data.vqa_balance=1").data, layout, tok, codes, 2, 0)
    assert data.vqa_balance is not None and data.vqa_balance.weight


def test_vqa_balance_by_loss_weighs_each_answer_instead_of_drawing(fx):
    cfg = _cfg(fx, "data.t2i=0", "data.caption=0", "data.vqa=1", "data.vqa_turns=2",
               "data.vqa_balance=1", "data.vqa_balance_by=loss")  # fmt: skip
    layout, tok, _, codes = prepare(cfg)
    rec = {"id": _record(fx)["id"], "vqa": [_qa("moles", "Yes"), _qa("hat", "No")]}
    bal = VQABalance({("moles", "yes"): 1, ("moles", "no"): 9, ("hat", "no"): 5}, alpha=1.0)
    seqs = []
    for i in range(4):
        _, seq = record_to_sequence(
            cfg.data, layout, tok, rec, codes[rec["id"]], record_generator(0, 0, i), bal
        )
        _, plain = record_to_sequence(
            cfg.data, layout, tok, rec, codes[rec["id"]], record_generator(0, 0, i), None
        )
        assert seq.ids == plain.ids and plain.loss_weight is None  # drawn as without balance
        # every target of the "Yes" turn weighs 5 (the cap), of the "No" turn 1; others 1
        eos = [k for k, t in enumerate(seq.ids) if t == layout.eos_id]
        yes_first = seq.ids[eos[0] - len(tok.encode(" Yes")) : eos[0]] == tok.encode(" Yes")
        first, second = (5.0, 1.0) if yes_first else (1.0, 5.0)
        for k, (m, w) in enumerate(zip(seq.loss_mask, seq.loss_weight, strict=True)):
            want = (first if k <= eos[0] else second) if m else 1.0
            assert w == want, (k, m, w)
        seqs.append(seq)
    b = collate(seqs + [build_mmu(layout, codes[rec["id"]], [5], [6, 7])], layout, pad_to=300)
    pad = b.modality_BT == int(Modality.PAD)
    assert (b.loss_weight_BT[pad] == 0).all() and (b.loss_weight_BT[-1][~pad[-1]] == 1).all()
    # the batches carry the weights; the loss is linear in them (turn by turn)
    data = MixedTaskData(cfg.data, layout, tok, codes, 4, 0)
    batch = next(iter(data(0, 0)))
    w_BT = batch["loss_weight_BT"]
    tgt = batch["loss_mask_BT"]
    real = batch["modality_BT"] != int(Modality.PAD)
    assert w_BT[tgt].ne(1.0).any() and (w_BT[~tgt & real] == 1).all()
    from dataclasses import replace

    torch.manual_seed(0)
    model = build_model(cfg.model, layout)
    loss_cfg = replace(cfg.loss, w_t2i=0.0, balance=0.0, seq_balance=0.0)

    def loss(weight_BT):
        with torch.no_grad():
            return unified_loss(model, {**batch, "loss_weight_BT": weight_BT}, layout, loss_cfg)

    first_turn = torch.zeros_like(tgt)
    for i in range(len(tgt)):
        row = batch["ids_BT"][i].tolist()
        first_turn[i, : row.index(layout.eos_id) + 1] = True
    a, c = torch.where(first_turn, w_BT, 0.0), torch.where(first_turn, 0.0, w_BT)
    torch.testing.assert_close(loss(w_BT).loss, loss(a).loss + loss(c).loss)
    ones = loss(torch.ones_like(w_BT))
    unweighted = unified_loss(model, {k: v for k, v in batch.items() if k != "loss_weight_BT"},
                              layout, loss_cfg)  # fmt: skip
    torch.testing.assert_close(ones.loss, unweighted.loss.detach())
    assert loss(w_BT).metrics["mmu"] == ones.metrics["mmu"]  # logged unweighted
    assert not torch.isclose(loss(w_BT).loss, ones.loss)
    with pytest.raises(UserError, match="vqa_balance_by"):
        _cfg(fx, "data.vqa_balance_by=draw").data.task_probs()


def _turns(seq, layout) -> list[tuple]:
    """A VQA conversation's turns, each the token ids between a bos and its eos."""
    out, cur = [], []
    for t in seq.ids[seq.ids.index(layout.eoi_id) + 1 :]:
        if t == layout.eos_id:
            out.append(tuple(cur[1:]))
            cur = []
        else:
            cur.append(t)
    return out


def _visit_and_pool(cfg, layout, tok, rec, codes, i: int, n: int):
    """Visit ``i`` of ``rec`` as a training row, and the fresh pool of ``n`` pairs it drew."""
    from unif2ace.data.faceforge.vqa import make_vqa
    from unif2ace.data.shards import labels_of
    from unif2ace.train.task import pool_rng

    _, seq = record_to_sequence(cfg.data, layout, tok, rec, codes[rec["id"]],
                                record_generator(0, 0, i))  # fmt: skip
    g = record_generator(0, 0, i)
    torch.multinomial(torch.as_tensor(cfg.data.task_probs()), 1, generator=g)  # the task
    return seq, make_vqa(labels_of(rec), pool_rng(g), n=n)


def test_vqa_pool_asks_fresh_pairs_from_the_labels_on_every_visit(fx):
    from unif2ace.train.task import fresh_vqa

    cfg = _cfg(fx, "data.t2i=0", "data.caption=0", "data.vqa=1", "data.vqa_turns=4",
               "data.vqa_pool=24")  # fmt: skip
    cfg.data.max_text_len = 1000
    layout, tok, _, codes = prepare(cfg)
    rec = next(iter_records(fx["data"], "train", ["id", "vqa", "attributes"]))

    def turns(seq) -> list[list[int]]:
        return [list(t) for t in _turns(seq, layout)]

    asked = set()
    for i in range(6):
        seq, pool = _visit_and_pool(cfg, layout, tok, rec, codes, i, 24)
        pairs = [tok.encode(q["question"]) + encode_answer(tok, q["answer"]) for q in pool]
        got = turns(seq)
        assert len(got) == 4 and all(t in pairs for t in got)  # 4 turns of this visit's pool
        asked.update(map(tuple, got))
        again = record_to_sequence(cfg.data, layout, tok, rec, codes[rec["id"]],
                                   record_generator(0, 0, i))[1]  # fmt: skip
        assert again.ids == seq.ids  # seeded by the row
    stored = {tuple(tok.encode(q["question"]) + encode_answer(tok, q["answer"]))
              for q in rec["vqa"]}  # fmt: skip
    assert len(asked - stored) > 4  # visits ask beyond the 8 stored pairs
    assert len(fresh_vqa(rec, 24, np.random.default_rng(0))) >= 20
    # 0 draws exactly the stored pairs, as before the field existed
    cfg0 = _cfg(fx, "data.t2i=0", "data.caption=0", "data.vqa=1", "data.vqa_turns=4")
    cfg0.data.max_text_len = 1000
    _, seq0 = record_to_sequence(cfg0.data, layout, tok, rec, codes[rec["id"]],
                                 record_generator(0, 0, 0))  # fmt: skip
    assert all(tuple(t) in stored for t in turns(seq0))
    with pytest.raises(UserError, match="labels"):
        fresh_vqa({"id": "x", "vqa": []}, 8, np.random.default_rng(0))
    with pytest.raises(UserError, match="vqa_pool"):
        _cfg(fx, "data.vqa_pool=-1").data.task_probs()
    # the balance counts the pools' answers, and the batches build
    bal_cfg = _cfg(fx, "data.vqa_pool=24", "data.vqa_balance=1", "data.vqa_turns=4")
    data = MixedTaskData(bal_cfg.data, layout, tok, codes, 2, 0)
    stored_classes = VQABalance.from_records(iter_records(fx["data"], "train", ["vqa"])).weight
    assert data.vqa_balance is not None
    assert len(data.vqa_balance.weight) > len(stored_classes)  # pools hold more answer classes
    assert next(iter(data(0, 0)))["ids_BT"].shape[0] == 2


def test_vqa_pool_turns_keep_the_stored_pairs_and_add_fresh_ones(fx):
    cfg = _cfg(fx, "data.t2i=0", "data.caption=0", "data.vqa=1", "data.vqa_turns=8",
               "data.vqa_pool=24", "data.vqa_pool_turns=3")  # fmt: skip
    cfg.data.max_text_len = 1000
    layout, tok, _, codes = prepare(cfg)
    rec = next(iter_records(fx["data"], "train", ["id", "vqa", "attributes"]))

    def pair(qa) -> tuple:
        return tuple(tok.encode(qa["question"]) + encode_answer(tok, qa["answer"]))

    def turns(seq) -> list[tuple]:
        return _turns(seq, layout)

    stored = [pair(qa) for qa in rec["vqa"]]
    stored_attrs = {VQABalance.key(qa)[0] for qa in rec["vqa"]}
    firsts = set()
    for i in range(8):
        seq, pool = _visit_and_pool(cfg, layout, tok, rec, codes, i, 24)
        fresh = {pair(qa) for qa in pool if VQABalance.key(qa)[0] not in stored_attrs}
        got = turns(seq)
        # every stored pair once, plus 3 pool pairs about attributes the stored ones skip
        assert sorted(t for t in got if t in stored) == sorted(stored)
        extra = [t for t in got if t not in stored]
        assert len(got) == len(stored) + 3 and len(extra) == 3 and set(extra) <= fresh
        firsts.add(got[0] in stored)
        assert record_to_sequence(cfg.data, layout, tok, rec, codes[rec["id"]],
                                  record_generator(0, 0, i))[1].ids == seq.ids  # fmt: skip
    assert firsts == {True, False}  # shuffled: the first (inference's) turn is either kind
    with pytest.raises(UserError, match="vqa_pool_turns needs"):
        _cfg(fx, "data.vqa_pool_turns=2").data.task_probs()
    with pytest.raises(UserError, match="vqa_pool_turns must"):
        _cfg(fx, "data.vqa_pool=8", "data.vqa_pool_turns=-1").data.task_probs()
    # with the balance, counted over the pools, the batches build
    bal = _cfg(fx, "data.vqa_pool=24", "data.vqa_pool_turns=2", "data.vqa_balance=1",
               "data.vqa_turns=4")  # fmt: skip
    data = MixedTaskData(bal.data, layout, tok, codes, 2, 0)
    assert next(iter(data(0, 0)))["ids_BT"].shape[0] == 2


def test_vqa_turns_make_one_conversation_whose_first_turn_is_the_single_layout(fx):
    cfg = _cfg(fx, "data.t2i=0", "data.caption=0", "data.vqa=1", "data.vqa_turns=3")
    cfg.data.max_text_len = 1000
    layout, tok, _, codes = prepare(cfg)
    rec = _record(fx)
    _, seq = record_to_sequence(
        cfg.data, layout, tok, rec, codes[rec["id"]], record_generator(0, 0, 1)
    )
    eoi = seq.ids.index(layout.eoi_id)
    turns, cur = [], []
    for t in seq.ids[eoi + 1 :]:
        if t == layout.eos_id:
            turns.append(cur[1:])  # drop the bos
            cur = []
        else:
            cur.append(t)
    pairs = [tok.encode(q["question"]) + encode_answer(tok, q["answer"]) for q in rec["vqa"]]
    idx = [pairs.index(t) for t in turns]
    assert len(idx) == 3 and len(set(idx)) == 3  # three distinct pairs of the record
    # the image is read once; under the causal text mask the first turn's logits are the
    # single-turn sequence's (and the sequence router pools the image only)
    q0 = rec["vqa"][idx[0]]
    one = build_mmu(
        layout, codes[rec["id"]], tok.encode(q0["question"]), encode_answer(tok, q0["answer"])
    )
    assert seq.ids[: len(one.ids)] == one.ids
    torch.manual_seed(0)
    model = build_model(cfg.model, layout).eval()
    with torch.no_grad():
        outs = [
            model(b.input_ids_BT, b.modality_BT, b.task_B).logits_BTV
            for b in (collate([seq], layout), collate([one], layout))
        ]
    torch.testing.assert_close(outs[0][:, : len(one.ids)], outs[1], atol=1e-4, rtol=1e-4)
    with pytest.raises(UserError, match="vqa_turns"):
        _cfg(fx, "data.vqa_turns=0").data.task_probs()


def test_data_factory_start_skips_exactly(fx):
    cfg = _cfg(fx, "train.micro_batch_size=2", "train.batch_size=2")
    layout, tok, _, codes = prepare(cfg)
    data = MixedTaskData(cfg.data, layout, tok, codes, 2, seed=0)
    full = list(data(1, 0))
    tail = list(data(1, 2))
    assert len(full) == 6 and len(tail) == 4  # 13 records, whole batches only
    for x, y in zip(full[2:], tail, strict=True):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    assert not torch.equal(full[0]["ids_BT"], list(data(2, 0))[0]["ids_BT"])  # epochs differ


def _losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_jsonl(out / "metrics.jsonl") if "loss" in r}


def test_resume_from_a_middle_checkpoint_repeats_the_losses_exactly(fx, tmp_path):
    common = ("train.steps=8", "train.log_every=1", "train.ckpt_every=3", "train.keep_last=0")
    cfg = _cfg(fx, *common, "train.optim.ema_decay=0.9")
    train_model(cfg, tmp_path / "ref", verbose=False)
    ref = _losses(tmp_path / "ref")
    assert sorted(ref) == list(range(1, 9))
    mid = tmp_path / "ref" / "checkpoints" / "step-00000003"
    train_model(cfg, tmp_path / "resumed", resume=str(mid), verbose=False)
    got = _losses(tmp_path / "resumed")
    assert got == {s: ref[s] for s in range(4, 9)}  # exact float equality


def test_debiased_ema_is_the_average_of_the_trained_weights_alone(fx, tmp_path):
    """A fixed-decay EMA (optim.ema_warmup=false) after n steps holds d^n of the initial
    weights; debiased_ema removes exactly that: it equals sum_k (1-d) d^(n-k) theta_k /
    (1 - d^n) over the live weights theta_k of every step (a checkpoint per step)."""
    from unif2ace.train.checkpoint import load_tensors
    from unif2ace.train.unified import debiased_ema

    d, n = 0.8, 5
    common = ("train.steps=5", "train.ckpt_every=1", "train.keep_last=0", "train.log_every=1")
    cfg = _cfg(fx, *common, f"train.optim.ema_decay={d}", "train.optim.ema_warmup=false")
    train_model(cfg, tmp_path / "run", verbose=False)
    ck = tmp_path / "run" / "checkpoints"
    live = [load_tensors(ck / f"step-{k:08d}" / "model.safetensors") for k in range(1, n + 1)]
    got = debiased_ema(ck / f"step-{n:08d}")
    raw = load_tensors(ck / f"step-{n:08d}" / "ema.safetensors")
    moved = 0
    for name, t in got.items():
        want = sum((1 - d) * d ** (n - k) * live[k - 1][name].float() for k in range(1, n + 1))
        want = want / (1 - d**n)
        assert torch.allclose(t.float(), want, atol=1e-5), name
        moved += int(not torch.allclose(raw[name].float(), want, atol=1e-5))
    assert moved > len(got) // 2  # the raw average is off: it still holds the initial weights
    cfg_file = ck / f"step-{n:08d}" / "config.json"  # a config from before the field existed
    old = json.loads(cfg_file.read_text())
    del old["train"]["optim"]["ema_warmup"]
    cfg_file.write_text(json.dumps(old))
    rng = torch.get_rng_state()
    again = debiased_ema(ck / f"step-{n:08d}")
    assert torch.equal(torch.get_rng_state(), rng)  # the rebuild leaves the caller's RNG
    assert all(torch.equal(again[k], got[k]) for k in got)
    init = (f"init.checkpoint={tmp_path / 'run'}", "init.checkpoint_weights=ema-debiased")
    warm_cfg = _cfg(fx, "train.steps=1", "train.optim.lr=1e-12", *init)
    train_model(warm_cfg, tmp_path / "warm-debiased", verbose=False)
    started, _, _ = load_trained(find_latest(tmp_path / "warm-debiased"))
    for name, p in started.named_parameters():
        if name in got:  # lr ~0: the warm start is the de-biased average
            torch.testing.assert_close(p.detach().float(), got[name].float(), rtol=1e-5, atol=1e-5)
    from unif2ace.export import export_model
    from unif2ace.pipeline import FacePipeline

    out = export_model(ck / f"step-{n:08d}", tmp_path / "exported", weights="ema-debiased")
    exported = dict(FacePipeline.from_pretrained(out).model.named_parameters())
    for name, t in got.items():  # stored in bf16
        assert torch.allclose(exported[name].float(), t.float(), atol=1e-2, rtol=1e-2), name
    warm = _cfg(fx, "train.steps=1", "train.optim.ema_decay=0.8")  # warm-up: nothing to remove
    train_model(warm, tmp_path / "warm", verbose=False)
    with pytest.raises(UserError, match="ema_warmup"):
        debiased_ema(tmp_path / "warm" / "checkpoints" / "step-00000001")


def test_prefetching_thread_changes_no_loss_and_no_resume(fx, tmp_path):
    common = ("train.steps=8", "train.log_every=1", "train.ckpt_every=3", "train.keep_last=0")
    train_model(_cfg(fx, *common), tmp_path / "ref", verbose=False)
    ref = _losses(tmp_path / "ref")
    cfg = _cfg(fx, *common, "train.prefetch=2")  # 8 steps cross epochs of 16 faces
    train_model(cfg, tmp_path / "pre", verbose=False)
    assert _losses(tmp_path / "pre") == ref  # exact float equality
    mid = tmp_path / "pre" / "checkpoints" / "step-00000003"
    train_model(cfg, tmp_path / "resumed", resume=str(mid), verbose=False)
    assert _losses(tmp_path / "resumed") == {s: ref[s] for s in range(4, 9)}
    with pytest.raises(UserError, match="prefetch"):
        train_model(_cfg(fx, "train.prefetch=-1"), tmp_path / "bad", verbose=False)


def test_resume_refuses_a_tokenizer_with_other_codes(fx, tmp_path):
    cfg = _cfg(fx, "train.steps=2", "train.ckpt_every=1", "train.keep_last=0")
    train_model(cfg, tmp_path / "run", verbose=False)
    torch.manual_seed(99)
    build_tokenizer("tiny").save_pretrained(tmp_path / "other")
    pretokenize(tmp_path / "other", fx["data"], splits=["train"], log=lambda s: None)
    more = _cfg(fx, "train.steps=3", f"data.image_tokenizer={tmp_path / 'other'}")
    with pytest.raises(UserError, match="encodes images differently"):
        train_model(more, tmp_path / "run", verbose=False)
    mid = tmp_path / "run" / "checkpoints" / "step-00000001"
    with pytest.raises(UserError, match="encodes images differently"):
        train_model(more, tmp_path / "run2", resume=str(mid), verbose=False)
    train_model(_cfg(fx, "train.steps=3"), tmp_path / "run", verbose=False)  # same one: fine


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_train_device_cuda_without_cuda_is_one_clear_error(fx, tmp_path):
    with pytest.raises(UserError, match="CUDA is not available"):
        train_model(_cfg(fx, "train.device=cuda"), tmp_path / "run", verbose=False)
    with pytest.raises(UserError, match="device"):
        _cfg(fx, "train.device=tpu")


def test_warm_start_from_a_checkpoint_takes_its_weights(fx, tmp_path, monkeypatch):
    common = ("train.steps=3", "train.log_every=1", "train.ckpt_every=3")
    src = tmp_path / "src"
    train_model(_cfg(fx, *common, "train.optim.ema_decay=0.5"), src, verbose=False)
    ckpt = find_latest(src)
    monkeypatch.chdir(tmp_path)  # the warm start named relative to here
    for weights in ("ema", "model"):
        cfg = _cfg(fx, *common, "init.checkpoint=src", f"init.checkpoint_weights={weights}",
                   "train.steps=1", "train.optim.lr=1e-12")  # fmt: skip
        out = tmp_path / f"warm-{weights}"
        train_model(cfg, out, verbose=False)
        want, _, _ = load_trained(ckpt, ema=weights == "ema")
        got, _, _ = load_trained(find_latest(out))
        for (n, a), b in zip(want.state_dict().items(), got.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=n)  # lr ~0: unchanged
        saved = json.loads((find_latest(out) / "config.json").read_text())
        assert saved["init"]["checkpoint"] == str(src.resolve())  # recorded absolute
    other = tmp_path / "other-text"
    train_text_tokenizer(iter_corpus(fx["data"]), 300).save(other)
    bad = _cfg(fx, f"init.checkpoint={src}", f"data.text_tokenizer={other}")
    with pytest.raises(UserError, match="vocabulary layout"):
        train_model(bad, tmp_path / "bad", verbose=False)


def test_warm_start_across_a_grown_codebook_keeps_the_old_predictions(fx, tmp_path):
    """A model of a tokenizer grown by n bits (`train tokenizer --grow-bits`) warm-starts from
    one of the old tokenizer: it reads code c as the old c >> n and gives each old code's
    probability to its 2^n children evenly (old logit - n ln 2), text untouched."""
    common = ("train.steps=2", "train.log_every=1", "train.ckpt_every=2")
    train_model(_cfg(fx, *common, "train.optim.ema_decay=0.5"), tmp_path / "src", verbose=False)
    old, src_layout, _ = load_trained(find_latest(tmp_path / "src"), ema=True)
    layout = VocabLayout(src_layout.text_vocab_size, src_layout.codebook_size * 4)
    assert layout.growth_bits(src_layout) == 2
    cfg = _cfg(fx, f"init.checkpoint={tmp_path / 'src'}")
    new = build_initial_model(cfg, layout).eval()

    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, src_layout.codebook_size, (2, 16), generator=g)
    low = torch.randint(0, 4, codes.shape, generator=g)
    text = torch.randint(0, src_layout.text_vocab_size, (2, 5), generator=g)

    def seq(lay, c):
        head = torch.tensor([[lay.t2i_id, lay.bos_id]] * 2)
        tail = torch.tensor([[lay.eos_id, lay.soi_id]] * 2)
        ids = torch.cat([head, text, tail, lay.codes_to_ids(c)], 1)
        mod = torch.full_like(ids, int(Modality.TEXT))
        mod[:, -c.shape[1] :] = int(Modality.IMAGE)
        return ids, mod

    task = torch.full((2,), int(Task.T2I))
    with torch.no_grad():
        a = old(*seq(src_layout, codes), task, torch.full((2,), 0.5)).logits_BTV
        b = new(*seq(layout, codes * 4 + low), task, torch.full((2,), 0.5)).logits_BTV
    off = layout.image_offset
    torch.testing.assert_close(b[..., :off], a[..., :off], rtol=1e-4, atol=1e-4)
    want = a[..., off:].repeat_interleave(4, dim=-1) - 2 * math.log(2)
    torch.testing.assert_close(b[..., off:], want, rtol=1e-4, atol=1e-4)
    with pytest.raises(UserError, match="grown codebook"):
        layout.rows_from(VocabLayout(src_layout.text_vocab_size, 48))
    assert (
        VocabLayout(src_layout.text_vocab_size + 1, layout.codebook_size).growth_bits(src_layout)
        is None
    )
    with pytest.raises(UserError, match="vocabulary layout"):
        build_initial_model(cfg, VocabLayout(src_layout.text_vocab_size, 96))


def test_warm_start_from_an_exported_q8_model_folder(fx, tmp_path):
    """Fine-tuning a shipped model: an export (q8 weights, export-only config keys) is a
    valid ``init.checkpoint``; its (dequantised) weights start the run."""
    from unif2ace.pipeline import FacePipeline

    common = ("train.steps=1", "train.log_every=1", "train.ckpt_every=1")
    train_model(_cfg(fx, *common), tmp_path / "src", verbose=False)
    export = FacePipeline.from_pretrained(find_latest(tmp_path / "src"), dtype=torch.float32)
    export.save_pretrained(tmp_path / "exported", q8=True)
    assert "weights_format" in json.loads((tmp_path / "exported" / "config.json").read_text())
    cfg = _cfg(fx, *common, f"init.checkpoint={tmp_path / 'exported'}", "train.optim.lr=1e-12")
    train_model(cfg, tmp_path / "warm", verbose=False)
    want = FacePipeline.from_pretrained(tmp_path / "exported", dtype=torch.float32).model
    got, _, _ = load_trained(find_latest(tmp_path / "warm"))
    for (n, a), b in zip(want.state_dict().items(), got.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=n)


def test_the_bundled_model_folder_reads_as_a_run_config():
    from unif2ace import bundled

    if not bundled.available("model"):
        pytest.skip("no bundled model in this install")
    cfg, layout = read_checkpoint_config(bundled.path("model"))
    assert cfg.model.d_model > 0 and layout.size > layout.image_offset


@pytest.mark.slow
def test_sigkill_then_resume_through_the_cli_is_bitwise_identical(fx, tmp_path):
    args = ["train", "model", "--preset", "tiny", "--data", str(fx["data"]),
            "--tokenizer", str(fx["imgtok"]), "--text-tokenizer", str(fx["texttok"]),
            "train.steps=16", "train.log_every=1", "train.ckpt_every=2"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "ref")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "unif2ace.cli", *args, "--out", str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while find_latest(tmp_path / "run") is None:
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.01)
        time.sleep(0.2)
        assert proc.poll() is None, "finished before the kill; make the run longer"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = int(find_latest(tmp_path / "run").name.split("-")[1])
    assert 0 < killed_at < 16
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    assert _losses(tmp_path / "run") == _losses(tmp_path / "ref")


def test_checkpoint_is_a_complete_self_describing_model(fx, tmp_path):
    cfg = _cfg(
        fx,
        *("train.steps=2", "train.ckpt_every=2", "train.sample_every=2"),
        *("sampling.num_images=2", "sampling.caption_tokens=4", "sampling.sampler.num_steps=2"),
    )
    res = train_model(cfg, tmp_path, verbose=False)
    ck = res.checkpoint
    for f in ("model.safetensors", "config.json", "image_tokenizer/config.json",
              "image_tokenizer/model.safetensors", "text_tokenizer/tokenizer.json"):  # fmt: skip
        assert (ck / f).is_file(), f
    assert (tmp_path / "samples" / "step-00000002.png").is_file()
    info = json.loads((tmp_path / "samples" / "step-00000002.json").read_text())
    assert len(info["prompts"]) == 2 and len(info["captions"]) == 2
    model, layout, back = load_trained(ck)
    assert back == cfg and layout.text_vocab_size == 400
    trained = res.model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())
    # an old checkpoint without a newer field still loads (the field takes its default)
    d = json.loads((ck / "config.json").read_text())
    del d["data"]["encoder_resolution"], d["loss"]["balance"]
    (ck / "config.json").write_text(json.dumps(d))
    old, _ = read_checkpoint_config(ck)
    assert old.data.encoder_resolution == 64 and old.loss.balance == 0.01


def test_cli_config_round_trip_and_unknown_keys(fx, tmp_path, capsys):
    base = ["train", "model", "--preset", "tiny", "--out", str(tmp_path), "--print-config"]
    assert main([*base, "--steps", "7", "train.optim.lr=2e-3", "loss.w_mmu=0.5"]) == 0
    d = json.loads(capsys.readouterr().out)
    cfg = from_dict(RunConfig, d)
    assert cfg.train.steps == 7 and cfg.train.optim.lr == 2e-3 and cfg.loss.w_mmu == 0.5
    assert to_dict(cfg) == d
    path = tmp_path / "run.yaml"
    from unif2ace.config import save_yaml

    save_yaml(cfg, path)
    assert load_run_config(str(path)) == cfg
    assert main([*base, "loss.nope=1"]) == 2
    err = capsys.readouterr().err
    assert "loss.nope" in err and "w_t2i" in err  # names the valid keys
    assert main(["train", "model", "--preset", "huge", "--out", str(tmp_path)]) == 2
    assert "tiny" in capsys.readouterr().err


def test_nproc_launches_the_same_command_once_per_rank(fx, tmp_path, capsys):
    from unif2ace.cli import build_parser
    from unif2ace.train.cli import launch_argv, resolve_config

    argv = ["train", "model", "--preset", "tiny", "--data", str(fx["data"]), "--tokenizer",
            str(fx["imgtok"]), "--text-tokenizer", str(fx["texttok"]), "--out", str(tmp_path),
            "--steps", "3", "--seed", "4", "--nproc", "2", "--threads", "1",
            "train.log_every=1", "loss.w_mmu=0.5"]  # fmt: skip
    args = build_parser().parse_args(argv)
    cmd = launch_argv(args)
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    inner = cmd[cmd.index("unif2ace.cli") + 1 :]
    assert "--nproc" not in inner and "--threads" not in inner
    again = build_parser().parse_args(inner)
    assert again.nproc == 1 and resolve_config(again) == resolve_config(args)
    # A batch that cannot split over the ranks fails before anything is launched.
    assert main([*argv[:-2], "--batch-size", "3", "--micro-batch-size", "1"]) == 2
    assert "world_size" in capsys.readouterr().err


@pytest.mark.slow
def test_nproc_two_trains_on_two_ranks(fx, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "model", "--preset", "tiny", "--data", str(fx["data"]), "--tokenizer",
            str(fx["imgtok"]), "--text-tokenizer", str(fx["texttok"]), "--out", str(out),
            "--steps", "2", "--batch-size", "4", "--micro-batch-size", "2", "--nproc", "2",
            "--threads", "1", "train.ckpt_every=2"]  # fmt: skip
    assert main(argv) == 0
    state = json.loads((find_latest(out) / "trainer_state.json").read_text())
    assert state["state"]["world_size"] == 2 and state["state"]["step"] == 2


def test_tiny_model_overfits_four_faces_and_the_sampler_reproduces_them(fx, tmp_path):
    """Tiny network, an 8x-downsampling tiny tokenizer (4x4 codes), four faces, their first
    prompts: D3Diff and the mask loss go to ~0 and MaskGIT with the model's denoiser
    (prompt cache, argmax) redraws each face's codes from its prompt. ~15 s.

    Without the sequence routers' balance loss: on four rows of one task at a constant lr of
    3e-3 it keeps the routes on the boundary between experts, and a late flip of one route
    gives a one-step spike (t2i 0.57 at step ~295 with it, < 0.001 without)."""
    from unif2ace.data.sequences import build_t2i, collate
    from unif2ace.diffusion.samplers import maskgit_sample
    from unif2ace.train.optim import OptimConfig, build_optimizer

    torch.manual_seed(0)
    build_tokenizer("tiny", channel_mult=(1, 2, 2, 2)).save_pretrained(tmp_path / "tok4")
    pretokenize(tmp_path / "tok4", fx["data"], splits=["train"], log=lambda s: None)
    cfg = _cfg(fx, f"data.image_tokenizer={tmp_path / 'tok4'}", "data.prompt_dropout=0",
               "loss.seq_balance=0")  # fmt: skip
    layout, tok, _, codes = prepare(cfg)
    recs = [r for r, _ in zip(iter_records(fx["data"], "train"), range(4), strict=False)]
    prompts = [tok.encode(r["prompts"][0]) for r in recs]
    want = torch.stack([codes[r["id"]].flatten() for r in recs])
    assert want.shape == (4, 16) and len(set(map(tuple, want.tolist()))) == 4
    b = collate([build_t2i(layout, p, c) for p, c in zip(prompts, want, strict=True)], layout)
    batch = {"ids_BT": b.input_ids_BT, "modality_BT": b.modality_BT, "task_B": b.task_B,
             "loss_mask_BT": b.loss_mask_BT, "image_mask_BT": b.image_mask_BT}  # fmt: skip
    torch.manual_seed(0)
    model = build_training_model(cfg.model, layout)
    opt = build_optimizer(model, OptimConfig(lr=3e-3, weight_decay=0.0))
    last = []
    for step in range(300):
        with torch.autocast("cpu", torch.bfloat16):
            res = unified_loss(model, {**batch, "noise_seed": torch.tensor(step)}, layout, cfg.loss)
        opt.zero_grad()
        res.loss.backward()
        opt.step()
        last = (last + [res.metrics])[-10:]
    assert max(m["t2i"] for m in last) < 0.05 and max(m["mask"] for m in last) < 0.02
    assert min(m["mask_acc"] for m in last) == 1.0
    model.eval()
    K = layout.codebook_size
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        out = maskgit_sample(
            make_image_denoiser(model, layout, prompts), torch.full_like(want, K),
            mask_token=K, codebook_size=K, num_steps=8, temperature=0.0,
            choice_temperature=0.0, generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
    assert torch.equal(out.codes_BN, want)


def _errors(proc: subprocess.CompletedProcess) -> str:
    return "\n".join(x for x in proc.stderr.splitlines() if "rror" in x)[-3000:]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_process_gloo_run_trains_samples_and_resumes(fx, tmp_path, parallel):
    """torchrun, 2 CPU ranks: ranks see different task mixes (routing and encoders used on
    one rank only), which FSDP2's reduce-scatter must survive; then resume to more steps."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"

    def run(steps: int) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-port", str(_free_port()),
               "-m", "unif2ace.cli", "train", "model", "--preset", "tiny",
               "--data", str(fx["data"]), "--tokenizer", str(fx["imgtok"]),
               "--text-tokenizer", str(fx["texttok"]), "--out", str(out),
               "--steps", str(steps), "--batch-size", "8", "--micro-batch-size", "2",
               f"train.parallel={parallel}", "train.log_every=1", "train.ckpt_every=2",
               "train.sample_every=4", "sampling.sampler.num_steps=2"]  # fmt: skip
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)

    first = run(4)
    assert first.returncode == 0, _errors(first)
    assert (out / "samples" / "step-00000004.png").is_file()
    second = run(6)
    assert second.returncode == 0, _errors(second)
    assert "resumed from" in second.stdout
    losses = _losses(out)
    assert sorted(losses) == list(range(1, 7)) and all(math.isfinite(v) for v in losses.values())
    model, _, _ = load_trained(find_latest(out))
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])  # base: bench only
def test_presets_load_and_match_the_model_presets(preset):
    from unif2ace.model import model_preset

    cfg = load_run_config(preset)
    assert cfg.preset == preset and cfg.model == model_preset(preset)
    assert cfg.loss.d3diff.alpha == 0.01 and cfg.data.prompt_dropout == 0.1
    cfg.train.grad_accum(1 if preset != "paper" else 8)  # batch sizes split evenly


def _rows(batch) -> list[tuple]:
    """The real (non-pad) token rows of a batch, sorted: equal for the same examples."""
    real = batch["modality_BT"] != int(Modality.PAD)
    return sorted(tuple(r[m].tolist()) for r, m in zip(batch["ids_BT"], real, strict=True))


def test_ranks_split_the_single_process_batches_exactly(fx):
    """Two ranks with micro-batch 2 build, step by step, the very rows one process builds
    with micro-batch 4 (records and their task/prompt/dropout choices)."""
    cfg = _cfg(fx)
    layout, tok, _, codes = prepare(cfg)

    one = MixedTaskData(cfg.data, layout, tok, codes, 4, seed=0)
    two = [MixedTaskData(cfg.data, layout, tok, codes, 2, 0, rank=r, world_size=2) for r in (0, 1)]
    for b1, b0, b2 in zip(one(0, 0), *(d(0, 0) for d in two), strict=False):
        assert _rows(b1) == sorted(_rows(b0) + _rows(b2))


def test_resume_on_more_ranks_continues_at_the_same_sample(fx):
    """A one-process position, adopted by two ranks (same micro-batch), continues with the
    rows the one process would have built next."""
    from unif2ace.train.loop import adopt_world_size
    from unif2ace.train.state import TrainState

    cfg = _cfg(fx)
    layout, tok, _, codes = prepare(cfg)

    one = MixedTaskData(cfg.data, layout, tok, codes, 2, seed=0)
    two = [MixedTaskData(cfg.data, layout, tok, codes, 2, 0, rank=r, world_size=2) for r in (0, 1)]
    state = TrainState(batch_in_epoch=4, world_size=1)
    adopt_world_size(state, 2)
    assert state.batch_in_epoch == 2 and state.world_size == 2
    nxt = [next(iter(d(0, state.batch_in_epoch))) for d in two]
    after = iter(one(0, 4))
    assert sorted(_rows(nxt[0]) + _rows(nxt[1])) == sorted(_rows(next(after)) + _rows(next(after)))
    adopt_world_size(state, 1)  # and back
    assert state.batch_in_epoch == 4 and state.world_size == 1


def test_trained_encoders_are_loaded_frozen_and_survive_resume(fx, tmp_path):
    from unif2ace.model import model_preset
    from unif2ace.model.encoder_train import ProbedEncoder, save_trained_encoder

    tiny = model_preset("tiny")
    folders = {}
    for slot, seed in (("semantic", 1), ("face", 2)):
        torch.manual_seed(seed)
        enc = ProbedEncoder(tiny.semantic_feature_dim, tiny.encoder_width, 5)
        save_trained_encoder(enc, tmp_path / slot, {"kind": slot})
        folders[slot] = enc.encoder.state_dict()
    common = ("train.steps=4", "train.log_every=1", "train.ckpt_every=2", "train.keep_last=0")
    init = (
        f"init.semantic_encoder={tmp_path / 'semantic'}",
        f"init.face_encoder={tmp_path / 'face'}",
    )
    cfg = _cfg(fx, *common, *init)
    train_model(cfg, tmp_path / "run", verbose=False)
    ref = _losses(tmp_path / "run")
    model = load_trained(tmp_path / "run" / "checkpoints" / "step-00000004")[0]
    for slot, state in folders.items():  # frozen: the weights are still the trained ones
        got = model.encoders[slot].state_dict()
        assert all(torch.equal(got[k], state[k]) for k in state), slot
    mid = tmp_path / "run" / "checkpoints" / "step-00000002"
    train_model(cfg, tmp_path / "resumed", resume=str(mid), verbose=False)
    assert _losses(tmp_path / "resumed") == {s: ref[s] for s in (3, 4)}


def test_encoder_dropout_blanks_a_seeded_share_of_understanding_images(fx):
    def images(p: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = _cfg(fx, f"data.encoder_dropout={p}", "data.t2i=0.2")
        layout, tok, _, codes = prepare(cfg)
        batches = list(MixedTaskData(cfg.data, layout, tok, codes, 4, seed=seed)(0, 0))
        imgs = torch.cat([b["images_BCHW"] for b in batches])
        mmu = torch.cat([b["task_B"] for b in batches]) == int(Task.MMU)
        return imgs[mmu], torch.cat([b["ids_BT"] for b in batches])

    def blank(x: torch.Tensor) -> torch.Tensor:
        return (x == 0.5).flatten(1).all(1)

    none, ids0 = images(0.0)
    every, ids1 = images(1.0)
    half, ids_half = images(0.5)
    assert len(none) >= 8 and not blank(none).any()  # FaceForge faces are not uniform grey
    assert blank(every).all()
    assert 0 < int(blank(half).sum()) < len(half)
    # rows not blanked keep their face; the sequences are what p = 0 gives; seeded
    assert torch.equal(half[~blank(half)], none[~blank(half)])
    assert torch.equal(ids0, ids1) and torch.equal(ids0, ids_half)
    assert torch.equal(images(0.5)[0], half)
    with pytest.raises(UserError, match="encoder_dropout"):
        _cfg(fx, "data.encoder_dropout=1.5").data.task_probs()
