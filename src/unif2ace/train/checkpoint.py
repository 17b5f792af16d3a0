"""Checkpoints: safetensors + JSON folders, written atomically, keep-last-k, never pickled.

Layout under a run folder::

    OUT/checkpoints/latest                      text: name of the newest complete checkpoint
    OUT/checkpoints/step-00001000/
        model.safetensors                       the unwrapped model's state dict
        ema.safetensors                         EMA weights (when EMA is on)
        config.json                             the resolved run config
        trainer_state.json                      TrainState, optimizer hyper-parameters and
                                                scalars, Python/NumPy RNG states (per rank)
        trainer_state.safetensors               optimizer moments ("optim/<param>/<key>") and
                                                torch RNG states ("rng/<rank>/<name>")
        ...                                     anything ``extra_files`` writes (tokenizers)

A checkpoint is written into ``.tmp-*`` next to its final place, every file fsynced, then
renamed (atomic on POSIX), and only then does ``latest`` move (temp file + ``os.replace``). A
run killed at any moment therefore leaves either the old or the new checkpoint complete; stale
``.tmp-*`` folders are ignored by ``find_latest`` and removed by the next save.
*Pattern: nanochat ``checkpoint_manager.py``; torch.distributed.checkpoint's full state dicts.*
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .. import quant
from ..atomic import TMP_PREFIX, atomic_path, fsync_path, write_text_atomic
from ..config import to_dict
from ..errors import UserError
from .distributed import barrier, is_fsdp, unwrap
from .optim import EMA
from .state import RngState, TrainState, capture_rng

CKPT_SUBDIR = "checkpoints"
LATEST = "latest"
MODEL_FILE, EMA_FILE, CONFIG_FILE = "model.safetensors", "ema.safetensors", "config.json"
STATE_JSON, STATE_TENSORS = "trainer_state.json", "trainer_state.safetensors"
FORMAT = "unif2ace-trainer-state"
_STEP_RE = re.compile(r"^step-(\d+)$")


def checkpoint_root(out_dir: str | Path) -> Path:
    return Path(out_dir) / CKPT_SUBDIR


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


# ----------------------------------------------------------------------------- file helpers


def _fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            fsync_path(p)
    for d in [*(p for p in folder.rglob("*") if p.is_dir()), folder]:
        fsync_path(d)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temp folder; on success fsync it and rename it to ``final`` (replacing it)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{TMP_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        old = None
        if final.exists():  # re-saving a step (e.g. after a resume): swap, then delete the old
            old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
            os.rename(final, old)
        os.rename(tmp, final)
        fsync_path(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


ALIASES_KEY = "unif2ace.aliases"


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, meta: dict | None = None) -> None:
    """Save to safetensors; tied tensors (same storage, offset, shape) are stored once.

    safetensors refuses shared storage, so a repeated tensor is recorded as an alias of the
    first name in the metadata (``unif2ace.aliases``: JSON {alias: name}) and restored by
    ``load_tensors``. Other views are copied.
    """
    first: dict[tuple, str] = {}
    aliases: dict[str, str] = {}
    out = {}
    for k, t in tensors.items():
        t = t.detach().cpu()
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)
        if t.numel() and key in first:
            aliases[k] = first[key]
            continue
        if t.numel():
            first[key] = k
        out[k] = t if t.is_contiguous() else t.contiguous()
    shared = {t.untyped_storage().data_ptr() for t in out.values() if t.numel()}
    if len(shared) < sum(1 for t in out.values() if t.numel()):  # views into one storage
        out = {k: t.clone() for k, t in out.items()}
    meta = dict(meta or {})
    if aliases:
        meta[ALIASES_KEY] = json.dumps(aliases, sort_keys=True)
    save_file(out, str(path), metadata=meta or None)


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file written by this module (tied-tensor aliases restored)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint file {str(path)!r} is missing; the checkpoint is incomplete")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise UserError(f"cannot read {str(path)!r} ({err}); the file is corrupt") from None
    for alias, name in json.loads(meta.get(ALIASES_KEY, "{}")).items():
        tensors[alias] = tensors[name]
    if quant.is_quantized(tensors):  # an export with --weights-format q8
        tensors = quant.dequantize(tensors)
    return tensors


# ----------------------------------------------------------------------------- state dicts


def _full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded model state dict (collective under FSDP2; rank 0 gets the tensors)."""
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(model, options=opts)
    return unwrap(model).state_dict()


def _full_optim_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Optimizer state keyed by parameter names (collective under FSDP2)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(model, optimizer, options=opts)


def _split_optim(osd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state dict → (tensors "optim/<fqn>/<key>", JSON part)."""
    tensors, scalars = {}, {}
    for fqn, st in osd["state"].items():
        for key, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim/{fqn}/{key}"] = v
            else:
                scalars.setdefault(fqn, {})[key] = v
    groups = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in g.items()}
        for g in osd["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _join_optim(tensors: dict[str, torch.Tensor], js: dict) -> dict:
    state: dict[str, dict] = {}
    for name, t in tensors.items():
        if name.startswith("optim/"):
            fqn, key = name[len("optim/") :].rsplit("/", 1)
            state.setdefault(fqn, {})[key] = t
    for fqn, st in js["scalars"].items():
        state.setdefault(fqn, {}).update(st)
    groups = [
        {k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in js["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def _full_tensors(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Unshard FSDP2 DTensors (collective); plain tensors pass through."""
    return {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in sd.items()}


def _gather_rng(device: torch.device) -> list[RngState]:
    mine = capture_rng(device)
    if not (dist.is_available() and dist.is_initialized()):
        return [mine]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, mine)  # in-memory exchange, never read from a file
    return out


# ----------------------------------------------------------------------------- save


def save_checkpoint(
    out_dir: str | Path,
    model: nn.Module,
    state: TrainState,
    optimizer: torch.optim.Optimizer | None = None,
    ema: EMA | None = None,
    config: Any = None,
    keep_last: int = 3,
    device: torch.device | None = None,
    extra_files: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``OUT/checkpoints/step-N`` atomically, move ``latest``, prune to ``keep_last``.

    Collective: every rank must call it (FSDP2 gathers shards, RNG states are gathered);
    rank 0 writes. ``config``: a dataclass or dict saved as config.json. ``extra_files(dir)``
    may write more files (tokenizers) into the folder before it is published.
    """
    root = checkpoint_root(out_dir)
    # Collectives first (every rank), then only rank 0 touches the disk.
    model_sd = _full_model_state(model)
    osd = _full_optim_state(model, optimizer) if optimizer is not None else None
    ema_sd = _full_tensors(ema.state_dict()) if ema is not None else None
    rngs = _gather_rng(device or torch.device("cpu"))
    final = root / checkpoint_name(state.step)
    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        barrier()
        return final
    optim_t, optim_js = _split_optim(osd) if osd is not None else ({}, None)
    _remove_stale(root)
    cfg = to_dict(config) if dataclasses.is_dataclass(config) else (config or {})
    with atomic_dir(final) as tmp:
        _save_tensors(model_sd, tmp / MODEL_FILE, {"format": "pt"})
        if ema_sd is not None:
            _save_tensors(ema_sd, tmp / EMA_FILE, {"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True, default=str))
        tensors = dict(optim_t)
        for r, rng in enumerate(rngs):
            tensors.update({f"rng/{r}/{k}": v for k, v in rng.tensor_part().items()})
        _save_tensors(tensors, tmp / STATE_TENSORS)
        meta = {
            "format": FORMAT,
            "version": 1,
            "state": state.to_dict(),
            "optimizer": optim_js,
            "rng": [r.json_part() for r in rngs],
            "ema": ema is not None,
        }
        (tmp / STATE_JSON).write_text(json.dumps(meta))
        if extra_files is not None:
            extra_files(tmp)
    write_text_atomic(root / LATEST, final.name + "\n", fsync=True)
    prune_checkpoints(out_dir, keep_last)
    barrier()
    return final


def _remove_stale(root: Path) -> None:
    """Delete temp folders left by a crash in the middle of a save."""
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith((TMP_PREFIX, ".old-")):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first (temp folders never match)."""
    root = checkpoint_root(out_dir)
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _STEP_RE.match(p.name)) and p.is_dir() and _complete(p)
    ]
    return [p for _, p in sorted(found)]


def _complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in (MODEL_FILE, CONFIG_FILE, STATE_JSON))


def prune_checkpoints(out_dir: str | Path, keep_last: int) -> None:
    """Keep the newest ``keep_last`` checkpoints (0: keep all) and whatever ``latest`` names."""
    if keep_last <= 0:
        return
    latest = find_latest(out_dir)
    for p in list_checkpoints(out_dir)[:-keep_last]:
        if latest is None or p.resolve() != latest.resolve():
            shutil.rmtree(p, ignore_errors=True)


def find_latest(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run: the ``latest`` pointer, else the highest step."""
    root = checkpoint_root(out_dir)
    pointer = root / LATEST
    if pointer.is_file():
        target = root / pointer.read_text().strip()
        if _STEP_RE.match(target.name) and target.is_dir() and _complete(target):
            return target
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


# ----------------------------------------------------------------------------- load


@dataclass
class LoadedCheckpoint:
    """What ``load_checkpoint`` read besides the weights it put into the model/optimizer."""

    path: Path
    state: TrainState
    config: dict
    rng: RngState | None  # this rank's generators (restore them once the data is positioned)


def checkpoint_step(path: str | Path) -> int:
    """The optimizer step a complete checkpoint folder was written at."""
    return int(json.loads((Path(path) / STATE_JSON).read_text())["state"]["step"])


def read_config(path: str | Path) -> dict:
    """The run config saved in a checkpoint folder, as a dict."""
    f = Path(path) / CONFIG_FILE
    if not f.is_file():
        raise UserError(f"{str(path)!r} is not a checkpoint folder (no {CONFIG_FILE})")
    return json.loads(f.read_text())


def save_model_weights(
    model: nn.Module, path: str | Path, dtype: torch.dtype | None = None, q8: bool = False
) -> None:
    """Write the (unwrapped) model's weights to one safetensors file, optionally cast.

    ``dtype=torch.bfloat16`` halves the size of a bundled model; floating tensors only are
    cast. ``q8``: store the large weights as 8-bit blocks (:mod:`unif2ace.quant`; read back
    transparently by :func:`load_tensors`). Collective under FSDP2 (rank 0 writes).
    """
    sd = _full_model_state(model)
    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return
    if dtype is not None:
        memo: dict[tuple, torch.Tensor] = {}  # cast tied tensors once, so they stay tied
        for k, v in sd.items():
            if v.is_floating_point():
                key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
                sd[k] = memo.setdefault(key, v.to(dtype))
    if q8:
        sd = quant.quantize(sd)
    with atomic_path(path, fsync=True) as tmp:
        _save_tensors(sd, tmp, {"format": "pt"})


def load_model_weights(
    path: str | Path, model: nn.Module, strict: bool = True, file: str = MODEL_FILE
) -> None:
    """Load ``model.safetensors`` (a folder or the file) into ``model``, casting dtypes.

    bf16 weights load into an fp32 model (and vice versa); DDP/FSDP2 models are handled.
    ``file=EMA_FILE`` loads the averaged weights; the EMA tracks trainable parameters only,
    so frozen ones (trained encoders, never-used null tokens) come from ``model.safetensors``
    of the same folder.
    """
    path = Path(path)
    partial = file == EMA_FILE and path.is_dir()
    if partial:  # everything from the model file, then the averages over it (tied weights too)
        load_model_weights(path, model, strict, MODEL_FILE)
    sd = load_tensors(path / file if path.is_dir() else path)
    own = _full_model_state(model) if not is_fsdp(model) else model.state_dict()
    sd = {k: v.to(own[k].dtype) if k in own else v for k, v in sd.items()}
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(
            model, sd, options=StateDictOptions(full_state_dict=True, strict=strict and not partial)
        )
        return
    missing, unexpected = unwrap(model).load_state_dict(sd, strict=False)
    if partial:
        missing = []
    if strict and (missing or unexpected):
        raise UserError(
            f"checkpoint {str(path)!r} does not match the model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}; check the model config"
        )


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    ema: EMA | None = None,
    rank: int = 0,
    strict: bool = True,
) -> LoadedCheckpoint:
    """Load weights (+ optimizer, EMA) from a checkpoint folder; return counters, config, RNG.

    RNG states are returned for ``rank`` (None when the checkpoint was written by fewer ranks:
    the run then continues, but not bit-identically).
    """
    path = Path(path)
    if not (path.is_dir() and _complete(path)):
        raise UserError(f"{str(path)!r} is not a complete checkpoint folder; pass a step-* folder")
    load_model_weights(path, model, strict=strict)
    meta = json.loads((path / STATE_JSON).read_text())
    if meta.get("format") != FORMAT:
        raise UserError(f"{str(path / STATE_JSON)!r} is not a unif2ace trainer state")
    tensors = load_tensors(path / STATE_TENSORS)
    if optimizer is not None and meta.get("optimizer") is not None:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        osd = _join_optim(tensors, meta["optimizer"])
        opts = StateDictOptions(full_state_dict=True)
        set_optimizer_state_dict(model, optimizer, optim_state_dict=osd, options=opts)
        for group in optimizer.param_groups:  # the DCP helper turns tuples (betas) into lists
            for k, v in group.items():
                if k != "params" and isinstance(v, list):
                    group[k] = tuple(v)
    if ema is not None:
        if not (path / EMA_FILE).is_file():
            raise UserError(f"{str(path)!r} has no EMA weights; set train.optim.ema_decay=0")
        ema.load_state_dict(load_tensors(path / EMA_FILE))
    rng = None
    if rank < len(meta["rng"]):
        rt = {k.split("/", 2)[2]: v for k, v in tensors.items() if k.startswith(f"rng/{rank}/")}
        rng = RngState.from_parts(meta["rng"][rank], rt)
    return LoadedCheckpoint(path, TrainState.from_dict(meta["state"]), read_config(path), rng)
