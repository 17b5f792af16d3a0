"""The single owner of the token layout (DESIGN.md principle 5).

One shared vocabulary holds, in this order::

    [0, text_vocab_size)                                   text BPE ids
    [special_offset, special_offset + len(SPECIAL_TOKENS)) special tokens (<|t2i|>, ..., [MASK])
    [image_offset, image_offset + codebook_size)           image codes (VQ/LFQ indices)

Nothing outside this module computes an offset: use ``layout.image_offset``,
``layout.codes_to_ids`` / ``layout.ids_to_codes``, ``layout.special(name)``.
The layout is saved with every checkpoint (``to_dict`` / ``from_dict``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import torch

from .errors import UserError

# Show-o's special tokens, plus pad/bos/eos and the absorbing [MASK] state of the image diffusion.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|pad|>",
    "<|bos|>",
    "<|eos|>",
    "<|t2i|>",
    "<|mmu|>",
    "<|soi|>",
    "<|eoi|>",
    "[MASK]",
)


class Modality(IntEnum):
    """Per-position segment ids used by the omni-attention mask and the MoE routing."""

    PAD = 0
    TEXT = 1
    IMAGE = 2


class Task(IntEnum):
    """Per-sequence task ids: which token-level expert group a sequence's tokens use."""

    T2I = 0  # generation
    MMU = 1  # understanding (captioning, VQA)


@dataclass(frozen=True)
class VocabLayout:
    """Token layout of the unified vocabulary.

    Args:
        text_vocab_size: size of the text BPE vocabulary (ids ``[0, text_vocab_size)``).
        codebook_size: number of image codes of the image tokenizer.
    """

    text_vocab_size: int
    codebook_size: int

    def __post_init__(self) -> None:
        if self.text_vocab_size <= 0 or self.codebook_size <= 0:
            raise UserError(
                f"vocabulary sizes must be positive (text {self.text_vocab_size}, "
                f"codebook {self.codebook_size})"
            )

    # --- offsets ---------------------------------------------------------------------------
    @property
    def special_offset(self) -> int:
        return self.text_vocab_size

    @property
    def image_offset(self) -> int:
        return self.special_offset + len(SPECIAL_TOKENS)

    @property
    def size(self) -> int:
        """Total vocabulary size (the model's embedding and output width)."""
        return self.image_offset + self.codebook_size

    # --- special tokens --------------------------------------------------------------------
    def special(self, name: str) -> int:
        """Id of a special token, e.g. ``layout.special("<|soi|>")``."""
        try:
            return self.special_offset + SPECIAL_TOKENS.index(name)
        except ValueError:
            raise UserError(
                f"unknown special token {name!r}; valid: {', '.join(SPECIAL_TOKENS)}"
            ) from None

    @property
    def pad_id(self) -> int:
        return self.special("<|pad|>")

    @property
    def bos_id(self) -> int:
        return self.special("<|bos|>")

    @property
    def eos_id(self) -> int:
        return self.special("<|eos|>")

    @property
    def t2i_id(self) -> int:
        return self.special("<|t2i|>")

    @property
    def mmu_id(self) -> int:
        return self.special("<|mmu|>")

    @property
    def soi_id(self) -> int:
        return self.special("<|soi|>")

    @property
    def eoi_id(self) -> int:
        return self.special("<|eoi|>")

    @property
    def mask_id(self) -> int:
        return self.special("[MASK]")

    # --- conversions -----------------------------------------------------------------------
    def codes_to_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """Image codes in ``[0, codebook_size)`` -> vocabulary ids."""
        return codes + self.image_offset

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Vocabulary ids of image codes -> codes in ``[0, codebook_size)``."""
        return ids - self.image_offset

    def is_image_id(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids >= self.image_offset) & (ids < self.size)

    def is_text_id(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids >= 0) & (ids < self.text_vocab_size)

    # --- a grown codebook ------------------------------------------------------------------
    def growth_bits(self, src: VocabLayout) -> int | None:
        """``n`` when this layout is ``src`` with its codebook grown by ``n`` bits (same text
        vocabulary, ``2^n`` times the codes: ``grow_codebook``'s tokenizers), else None."""
        ratio, rest = divmod(self.codebook_size, src.codebook_size)
        if self.text_vocab_size != src.text_vocab_size or rest or ratio < 2:
            return None
        n = ratio.bit_length() - 1
        return n if ratio == 1 << n else None

    def rows_from(self, src: VocabLayout) -> torch.Tensor:
        """For each id of this layout, the id of ``src`` that stands for it when the codebook
        grew by ``n`` bits: text and special ids map to themselves, code ``c`` to ``src``'s
        code ``c >> n`` (the grown tokenizer's high bits are the old code). ``(size,)`` int64."""
        n = self.growth_bits(src)
        if n is None:
            raise UserError(
                f"layout (text {self.text_vocab_size}, codes {self.codebook_size}) is not "
                f"(text {src.text_vocab_size}, codes {src.codebook_size}) with a grown codebook"
            )
        ids = torch.arange(self.size)
        codes = self.ids_to_codes(ids[self.image_offset :]) >> n
        return torch.cat([ids[: self.image_offset], src.codes_to_ids(codes)])

    # --- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "text_vocab_size": self.text_vocab_size,
            "codebook_size": self.codebook_size,
            "special_tokens": list(SPECIAL_TOKENS),
        }

    @classmethod
    def from_dict(cls, d: dict) -> VocabLayout:
        saved = tuple(d.get("special_tokens", SPECIAL_TOKENS))
        if saved != SPECIAL_TOKENS:
            raise UserError(
                f"checkpoint was saved with special tokens {saved}, this version uses "
                f"{SPECIAL_TOKENS}; convert the checkpoint or use a matching unif2ace version"
            )
        return cls(int(d["text_vocab_size"]), int(d["codebook_size"]))
