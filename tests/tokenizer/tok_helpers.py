"""Synthetic FaceForge-like shards for the tokenizer tests (no real data needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from unif2ace.data.shards import encode_png, shard_path, write_shard


def synthetic_image(rng: np.random.Generator, size: int) -> Image.Image:
    """A smooth random blob image (so a tiny autoencoder can learn something)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size, 3))
    for c in range(3):
        cx, cy, s = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.4)
        img[..., c] = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s**2))
    return Image.fromarray((img * 255).astype(np.uint8))


def write_synthetic_shards(
    root: Path, split: str = "train", shards: int = 2, rows: int = 5, size: int = 32, seed: int = 0
) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for s in range(shards):
        recs = []
        for r in range(rows):
            recs.append(
                {
                    "id": f"{split}-{s}-{r}",
                    "split": split,
                    "image": encode_png(synthetic_image(rng, size)),
                    "width": size,
                    "height": size,
                    "attributes": {"earrings": "none"},
                    "caption": f"A face number {s} {r} with brown eyes.",
                    "prompts": [f"brown eyes {r}", "a smiling person"],
                    "vqa": [
                        {
                            "question": "What colour are the eyes?",
                            "answer": "brown",
                            "category": "eyes",
                            "kind": "open",
                        }
                    ],
                }
            )
        path = shard_path(root, split, s)
        write_shard(path, recs)
        paths.append(path)
    return paths
