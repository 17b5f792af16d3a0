import pytest
from tok_helpers import write_synthetic_shards

from unif2ace.errors import UserError
from unif2ace.tokenizer.text import TextTokenizer, iter_corpus, train_text_tokenizer

CORPUS = [
    "A young woman with long blonde hair, hoop earrings and red lipstick.",
    "Does the person wear glasses? No.",
    "An old man with a grey beard and a mole on the left cheek, smiling.",
] * 20


def test_train_save_load_round_trip(tmp_path):
    tok = train_text_tokenizer(CORPUS, vocab_size=400)
    assert 256 < tok.vocab_size <= 400
    path = tok.save(tmp_path)
    loaded = TextTokenizer.from_file(tmp_path)
    assert path.name == "tokenizer.json"
    assert loaded.vocab_size == tok.vocab_size
    for text in CORPUS[:3] + ["unseen wörds ✓ 😀", ""]:
        ids = loaded.encode(text)
        assert ids == tok.encode(text)
        assert all(0 <= i < loaded.vocab_size for i in ids)
        assert loaded.decode(ids) == text
    # merges compress the training text below one id per byte
    assert len(tok.encode(CORPUS[0])) < len(CORPUS[0].encode()) / 2
    assert tok.encode_batch(CORPUS[:2]) == [tok.encode(CORPUS[0]), tok.encode(CORPUS[1])]


def test_errors(tmp_path):
    with pytest.raises(UserError):
        TextTokenizer.from_file(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError):
        TextTokenizer.from_file(tmp_path)
    with pytest.raises(UserError):
        train_text_tokenizer(CORPUS, vocab_size=100)


def test_corpus_from_shards(tmp_path):
    write_synthetic_shards(tmp_path, shards=1, rows=2, size=8)
    texts = list(iter_corpus(tmp_path))
    assert "brown eyes 1" in texts and "What colour are the eyes?" in texts
    assert "brown" in texts and any(t.startswith("A face number") for t in texts)
