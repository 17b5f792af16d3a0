"""What a run must remember to continue exactly: counters, data position and RNG states.

``TrainState`` is plain JSON (``trainer_state.json``); RNG states are split into JSON (Python
and NumPy Mersenne-Twister states: integers) and uint8 tensors (torch CPU/CUDA generator
states, saved in ``trainer_state.safetensors``). No pickle anywhere.
*Pattern: lingua ``TrainState`` (step + data-loader state + scheduler), made stateless for the
schedule (``optim.lr_at``).*
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import from_dict, to_dict


@dataclass
class TrainState:
    """Counters of a run, saved with every checkpoint.

    step: optimizer steps completed. epoch / batch_in_epoch: the data position, i.e. the
    number of micro-batches this rank has consumed in ``epoch`` (the next one is
    ``batch_in_epoch``). samples_seen / tokens_seen: global totals. elapsed_s: training wall
    time summed over all sessions. skipped_steps: steps whose gradient was non-finite.
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    samples_seen: int = 0
    tokens_seen: int = 0
    elapsed_s: float = 0.0
    skipped_steps: int = 0
    world_size: int = 1
    extra: dict = field(default_factory=dict)  # free-form JSON for the caller

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainState:
        """Missing keys take defaults (older checkpoints); unknown keys raise UserError."""
        return from_dict(cls, d, "trainer_state")

    def copy(self) -> TrainState:
        return dataclasses.replace(self, extra=dict(self.extra))


@dataclass
class RngState:
    """The global random generators of one process."""

    python: dict  # {"version": int, "state": [625 ints], "gauss": float | None}
    numpy: dict  # {"keys": [624 ints], "pos": int, "has_gauss": int, "cached_gaussian": float}
    torch_cpu: torch.Tensor  # uint8 [N]
    cuda: torch.Tensor | None = None  # uint8 [M], this process's CUDA device

    def json_part(self) -> dict:
        return {"python": self.python, "numpy": self.numpy}

    def tensor_part(self) -> dict[str, torch.Tensor]:
        out = {"torch_cpu": self.torch_cpu}
        if self.cuda is not None:
            out["cuda"] = self.cuda
        return out

    @classmethod
    def from_parts(cls, js: dict, tensors: dict[str, torch.Tensor]) -> RngState:
        return cls(js["python"], js["numpy"], tensors["torch_cpu"], tensors.get("cuda"))


def capture_rng(device: torch.device | None = None) -> RngState:
    """Snapshot Python, NumPy (legacy global), torch CPU and the CUDA device's generator."""
    version, mt, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    cuda = None
    if device is not None and device.type == "cuda":
        cuda = torch.cuda.get_rng_state(device).clone()
    return RngState(
        python={"version": version, "state": list(mt), "gauss": gauss},
        numpy={
            "keys": [int(k) for k in keys],
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        torch_cpu=torch.get_rng_state().clone(),
        cuda=cuda,
    )


def restore_rng(rng: RngState, device: torch.device | None = None) -> None:
    """Put back the generators captured by ``capture_rng``."""
    p = rng.python
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    n = rng.numpy
    np.random.set_state(
        (
            "MT19937",
            np.array(n["keys"], dtype=np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(rng.torch_cpu.to(torch.uint8).cpu())
    if rng.cuda is not None and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(rng.cuda.to(torch.uint8).cpu(), device)


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
