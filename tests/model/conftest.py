"""Shared fixtures of the model tests: a tiny layout, model and random sequences."""

from __future__ import annotations

import pytest
import torch

from unif2ace.model.config import model_preset
from unif2ace.model.transformer import build_model
from unif2ace.vocab import Modality, Task, VocabLayout


@pytest.fixture
def layout() -> VocabLayout:
    return VocabLayout(text_vocab_size=50, codebook_size=16)


@pytest.fixture
def tiny_model(layout):
    torch.manual_seed(0)
    return build_model(model_preset("tiny"), layout).eval()


def _make_batch(layout: VocabLayout, seed: int = 0, n_img: int = 6):
    """A T2I row, an MMU row and a left-padded T2I row with some [MASK] image tokens.

    Returns ids_BT, modality_BT, task_B.
    """
    g = torch.Generator().manual_seed(seed)
    T, I, P = int(Modality.TEXT), int(Modality.IMAGE), int(Modality.PAD)
    mods = [
        [T] * 5 + [I] * n_img + [T],
        [T, T] + [I] * n_img + [T] * 4,
        [P, P] + [T] * 3 + [I] * n_img + [T],
    ]
    mod = torch.tensor(mods)
    ids = torch.randint(0, layout.text_vocab_size, mod.shape, generator=g)
    codes = torch.randint(0, layout.codebook_size, mod.shape, generator=g)
    ids = torch.where(mod == I, layout.codes_to_ids(codes), ids)
    masked = (torch.rand(mod.shape, generator=g) < 0.4) & (mod == I)
    ids = torch.where(masked, torch.full_like(ids, layout.mask_id), ids)
    ids = torch.where(mod == P, torch.full_like(ids, layout.pad_id), ids)
    task = torch.tensor([int(Task.T2I), int(Task.MMU), int(Task.T2I)])
    return ids, mod, task


@pytest.fixture
def make_batch():
    """The batch factory ``make_batch(layout, seed=0, n_img=6)``."""
    return _make_batch
