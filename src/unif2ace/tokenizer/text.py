"""Text tokenizer: byte-level BPE (GPT-2 style) trained with the ``tokenizers`` library.

The tokenizer owns only the text ids ``[0, vocab_size)``; special tokens (``<|t2i|>``, bos,
eos, pad, ...) live in :class:`~unif2ace.vocab.VocabLayout` after the text ids, so any local
``tokenizer.json`` (ours, or e.g. Phi-1.5's for paper scale) loads the same way and the
layout is ``VocabLayout(text_vocab_size=tok.vocab_size, ...)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from ..errors import UserError

FILE = "tokenizer.json"


class TextTokenizer:
    """Thin wrapper over a ``tokenizers.Tokenizer`` loaded from a ``tokenizer.json``."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer

    @classmethod
    def from_file(cls, path: str | Path) -> TextTokenizer:
        """Load ``path`` (a ``tokenizer.json`` file or a folder containing one)."""
        p = Path(path)
        if p.is_dir():
            p = p / FILE
        if not p.is_file():
            raise UserError(f"no {FILE} at {path}; train one with `unif2ace train text-tokenizer`")
        try:
            return cls(Tokenizer.from_file(str(p)))
        except Exception as err:  # tokenizers raises plain Exception on parse errors
            raise UserError(f"{p} is not a valid tokenizer.json ({err})") from None

    @property
    def vocab_size(self) -> int:
        """Number of text ids, including tokens added on top of the base vocabulary."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Text -> ids in ``[0, vocab_size)`` (no special tokens added)."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text (byte-level: ``decode(encode(s)) == s`` for any string)."""
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def to_str(self) -> str:
        """The tokenizer as ``tokenizer.json`` text (equal strings: the same tokenizer)."""
        return self._tok.to_str()

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/tokenizer.json`` atomically; returns its path."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / (FILE + ".tmp")
        self._tok.save(str(tmp))
        tmp.replace(d / FILE)
        return d / FILE


def train_text_tokenizer(
    texts: Iterable[str], vocab_size: int, min_frequency: int = 2
) -> TextTokenizer:
    """Train a byte-level BPE on ``texts``.

    The 256 byte symbols are always in the vocabulary, so every string encodes; the final
    size may be below ``vocab_size`` when the corpus has fewer merges to learn.
    """
    if vocab_size <= 256:
        raise UserError(f"--vocab-size must exceed 256 (the byte alphabet), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return TextTokenizer(tok)


def iter_corpus(root: str | Path, splits: Sequence[str] = ("train",)) -> Iterator[str]:
    """Caption, prompt and VQA question/answer strings of the given splits of a data set."""
    from ..data.shards import iter_records

    for split in splits:
        for rec in iter_records(root, split, columns=["caption", "prompts", "vqa"]):
            if rec.get("caption"):
                yield rec["caption"]
            yield from (p for p in rec.get("prompts") or [] if p)
            for qa in rec.get("vqa") or []:
                yield qa["question"]
                yield qa["answer"]
