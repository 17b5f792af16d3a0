import pytest
import torch

from unif2ace.data.sequences import (
    build_caption,
    build_mmu,
    build_mmu_turns,
    build_t2i,
    build_t2i_with_dropout,
    collate,
    decode_batch,
    decode_sequence,
    drop_prompt,
    mmu_from_record,
    t2i_from_record,
)
from unif2ace.errors import UserError
from unif2ace.vocab import SPECIAL_TOKENS, Modality, Task, VocabLayout

LAYOUT = VocabLayout(text_vocab_size=50, codebook_size=64)


def _codes(seed=0, side=4):
    return torch.randint(64, (side, side), generator=torch.Generator().manual_seed(seed))


def test_layout_ids_never_collide():
    specials = [LAYOUT.special(n) for n in SPECIAL_TOKENS]
    text = set(range(LAYOUT.text_vocab_size))
    image = set(LAYOUT.codes_to_ids(torch.arange(64)).tolist())
    assert len(set(specials)) == len(specials)
    assert not (set(specials) & text) and not (set(specials) & image) and not (text & image)
    assert len(text | image | set(specials)) == LAYOUT.size


def test_t2i_layout_and_round_trip():
    codes, prompt = _codes(), [3, 7, 11]
    s = build_t2i(LAYOUT, prompt, codes)
    L = LAYOUT
    assert s.ids[:6] == [L.t2i_id, L.bos_id, 3, 7, 11, L.eos_id]
    assert s.ids[6] == L.soi_id and s.ids[-1] == L.eoi_id and len(s) == 6 + 16 + 2
    assert s.task == Task.T2I
    assert [i for i, m in enumerate(s.loss_mask) if m] == list(range(7, 23))
    assert s.image_mask == s.loss_mask
    # Only the codes are IMAGE; the <|soi|>/<|eoi|> markers are causal TEXT.
    assert set(s.modality[7:23]) == {Modality.IMAGE}
    assert set(s.modality[:7]) == {Modality.TEXT} and s.modality[23] == Modality.TEXT
    d = decode_sequence(LAYOUT, s.ids)
    assert d.task == Task.T2I and d.text_ids == prompt and torch.equal(d.codes, codes.flatten())


def test_t2i_fixed_text_len_aligns_images_and_masks():
    a = build_t2i(LAYOUT, [1, 2, 3, 4], _codes(), text_len=10)
    b = build_t2i(LAYOUT, [], _codes(1), text_len=10)
    c = build_t2i(LAYOUT, list(range(20)), None, num_image_tokens=16, text_len=10)
    assert len(a) == len(b) == len(c) == 10 + 18
    assert a.ids.index(LAYOUT.soi_id) == b.ids.index(LAYOUT.soi_id) == 10
    assert a.ids[:3] == [LAYOUT.pad_id] * 3 and a.modality[:3] == [Modality.PAD] * 3
    assert a.ids[3] == LAYOUT.t2i_id
    assert decode_sequence(LAYOUT, c.ids).text_ids == list(range(7))  # truncated
    assert (decode_sequence(LAYOUT, c.ids).codes == -1).all()  # all [MASK]
    assert decode_sequence(LAYOUT, b.ids).text_ids == []


def test_mmu_layout_loss_on_answer_only():
    codes, q, a = _codes(), [5, 6], [8, 9, 10]
    s = build_mmu(LAYOUT, codes, q, a)
    L = LAYOUT
    assert s.ids[:2] == [L.mmu_id, L.soi_id] and s.ids[18] == L.eoi_id
    assert s.ids[19:] == [L.bos_id, 5, 6, 8, 9, 10, L.eos_id]
    assert [s.ids[i] for i, m in enumerate(s.loss_mask) if m] == [8, 9, 10, L.eos_id]
    assert s.task == Task.MMU and s.modality[:2] == [Modality.TEXT] * 2
    assert set(s.modality[2:18]) == {Modality.IMAGE} and s.modality[18] == Modality.TEXT
    assert [i for i, m in enumerate(s.image_mask) if m] == list(range(2, 18))
    d = decode_sequence(LAYOUT, s.ids, s.loss_mask)
    assert d.text_ids == q + a and d.target_text_ids == a and torch.equal(d.codes, codes.flatten())
    cap = build_caption(LAYOUT, codes, [1, 2, 3, 4, 5, 6], instruction_ids=[7], max_text_len=6)
    assert decode_sequence(LAYOUT, cap.ids, cap.loss_mask).target_text_ids == [1, 2, 3]


def test_conversation_turns_layout_targets_and_round_trip():
    codes, L = _codes(), LAYOUT
    turns = [([5, 6], [8]), ([7], [9, 10]), ([11, 12], [13])]
    one = build_mmu_turns(L, codes, turns[:1])
    assert one == build_mmu(L, codes, [5, 6], [8])  # one turn is the single-turn layout
    s = build_mmu_turns(L, codes, turns)
    assert s.ids[: len(one.ids)] == one.ids  # the first turn is what inference asks
    assert s.ids[19:29] == [L.bos_id, 5, 6, 8, L.eos_id, L.bos_id, 7, 9, 10, L.eos_id]
    assert s.ids[29:] == [L.bos_id, 11, 12, 13, L.eos_id]
    # targets: every answer and its eos, never a question or a bos
    assert [s.ids[i] for i, m in enumerate(s.loss_mask) if m] == [
        8, L.eos_id, 9, 10, L.eos_id, 13, L.eos_id
    ]  # fmt: skip
    assert len(s.ids) == len(s.modality) == len(s.loss_mask) == len(s.image_mask)
    assert s.modality[18:] == [Modality.TEXT] * (len(s.ids) - 18) and sum(s.image_mask) == 16
    d = decode_sequence(L, s.ids, s.loss_mask)
    assert d.text_ids == [5, 6, 8, 7, 9, 10, 11, 12, 13] and d.target_text_ids == [8, 9, 10, 13]
    assert torch.equal(d.codes, codes.flatten())
    # the cap drops whole later turns; a first turn longer than the cap is truncated
    assert build_mmu_turns(L, codes, turns, max_text_len=10).ids == s.ids[:29]
    assert build_mmu_turns(L, codes, turns, max_text_len=9).ids == one.ids
    assert build_mmu_turns(L, codes, [([5, 6], [8, 9])], max_text_len=3).ids[19:] == [
        L.bos_id, 5, L.eos_id
    ]  # fmt: skip
    b = collate([s, one], L)
    assert not b.loss_mask_BT[1, len(one.ids) :].any()
    with pytest.raises(UserError, match="turn"):
        build_mmu_turns(L, codes, [])


def test_collate_padding_never_in_loss_and_round_trips():
    seqs = [
        build_t2i(LAYOUT, [1, 2], _codes(0)),
        build_mmu(LAYOUT, _codes(1), [3], [4, 5, 6, 7, 8]),
        build_caption(LAYOUT, _codes(2, side=2), [9]),
    ]
    batch = collate(seqs, LAYOUT, pad_to=40)
    assert batch.input_ids_BT.shape == (3, 40)
    pad = batch.input_ids_BT == LAYOUT.pad_id
    assert torch.equal(pad, batch.modality_BT == Modality.PAD)
    assert not (batch.loss_mask_BT & pad).any() and not (batch.image_mask_BT & pad).any()
    assert batch.task_B.tolist() == [Task.T2I, Task.MMU, Task.MMU]
    assert batch.lengths_B.tolist() == [len(s) for s in seqs]
    assert batch.position_ids_BT[0, : len(seqs[0])].tolist() == list(range(len(seqs[0])))
    for s, d in zip(seqs, decode_batch(LAYOUT, batch), strict=True):
        ref = decode_sequence(LAYOUT, s.ids, s.loss_mask)
        assert d.text_ids == ref.text_ids and torch.equal(d.codes, ref.codes)
        assert d.target_text_ids == ref.target_text_ids
    # the image-position mask selects exactly the codes
    ids = batch.input_ids_BT[batch.image_mask_BT]
    assert LAYOUT.is_image_id(ids).all()
    with pytest.raises(UserError):
        collate(seqs, LAYOUT, pad_to=5)


def test_left_pad_positions_start_at_zero():
    batch = collate([build_t2i(LAYOUT, [1], _codes(), text_len=8)], LAYOUT)
    pos = batch.position_ids_BT[0]
    assert pos[:4].tolist() == [0, 0, 0, 0] and pos[4:8].tolist() == [0, 1, 2, 3]


def test_cfg_dropout_is_seeded_and_has_the_right_rate():
    g = torch.Generator().manual_seed(0)
    flags = [drop_prompt([1, 2], 0.1, g)[1] for _ in range(4000)]
    assert 0.08 < sum(flags) / len(flags) < 0.12
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = [build_t2i_with_dropout(LAYOUT, [1, 2], _codes(), 0.5, g1) for _ in range(20)]
    b = [build_t2i_with_dropout(LAYOUT, [1, 2], _codes(), 0.5, g2) for _ in range(20)]
    assert [s.ids for s in a] == [s.ids for s in b]
    dropped = [s for s in a if s.prompt_dropped]
    assert dropped and all(decode_sequence(LAYOUT, s.ids).text_ids == [] for s in dropped)
    assert drop_prompt([1, 2], 0.0)[0] == [1, 2] and drop_prompt([1, 2], 1.0)[0] == []


def test_invalid_ids_raise():
    with pytest.raises(UserError):
        build_t2i(LAYOUT, [50], _codes())
    with pytest.raises(UserError):
        build_mmu(LAYOUT, torch.tensor([64]), [], [1])
    with pytest.raises(UserError):
        decode_sequence(LAYOUT, [1, 2, 3])


class _CharTok:
    """A stand-in text tokenizer with the TextTokenizer interface (bytes mod 50)."""

    def encode(self, text):
        return [b % 50 for b in text.encode()]


def test_examples_from_records():
    rec = {"prompts": ["ab", "cd"], "caption": "ef", "vqa": [{"question": "q?", "answer": "yes"}]}
    g = torch.Generator().manual_seed(0)
    tok = _CharTok()
    t = [t2i_from_record(LAYOUT, tok, rec, _codes(), g, drop_prob=0.0) for _ in range(20)]
    prompts = {tuple(decode_sequence(LAYOUT, s.ids).text_ids) for s in t}
    assert prompts == {tuple(tok.encode("ab")), tuple(tok.encode("cd"))}
    m = [mmu_from_record(LAYOUT, tok, rec, _codes(), g) for _ in range(20)]
    targets = {tuple(decode_sequence(LAYOUT, s.ids, s.loss_mask).target_text_ids) for s in m}
    assert targets == {tuple(tok.encode("ef")), tuple(tok.encode(" yes"))}
