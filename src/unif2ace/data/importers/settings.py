"""Import settings (a light module: the CLI imports it without pulling in pixels or parquet)."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import UserError


@dataclass(frozen=True)
class ImportSettings:
    """How items become shards. ``size``: output side in px; fractions apply when the source
    has no split of its own."""

    size: int = 128
    shard_size: int = 1000
    val_frac: float = 0.05
    test_frac: float = 0.05
    seed: int = 0

    def check(self) -> None:
        if not 8 <= self.size <= 4096:
            raise UserError(f"--size must be between 8 and 4096 px, got {self.size}")
        if self.shard_size < 1:
            raise UserError(f"--shard-size must be at least 1, got {self.shard_size}")
        fr = (self.val_frac, self.test_frac)
        if min(fr) < 0 or sum(fr) >= 1:
            raise UserError("--val-frac and --test-frac must be >= 0 and sum to less than 1")
