"""Metrics as JSONL and as TensorBoard event files, with no TensorBoard dependency.

``MetricsLogger(out_dir)`` appends one JSON line per logged step to ``OUT/metrics.jsonl``
(flushed) and the same scalars to ``OUT/tb/events.out.tfevents.*``.

The event file is TensorBoard's on-disk format, written by hand (scalar summaries only):
a sequence of TFRecords ``uint64 length | uint32 masked_crc32c(length) | data |
uint32 masked_crc32c(data)`` whose payloads are ``tensorflow.Event`` protobufs
(``wall_time`` = field 1 double, ``step`` = 2 int64, ``file_version`` = 3 string,
``summary`` = 5 message; ``Summary.value`` = 1; ``Value.tag`` = 1 string,
``Value.simple_value`` = 2 float). Sources: tensorflow/core/util/event.proto,
tensorflow/core/framework/summary.proto, tensorflow/core/lib/io/record_writer.cc,
tensorflow/core/lib/hash/crc32c.h (mask = rotate right 15 + 0xa282ead8).
``read_events`` parses such files back (used by the tests and handy for plotting).
"""

from __future__ import annotations

import json
import math
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

from ..atomic import write_text_atomic

_CRC_TABLE: list[int] | None = None
_MASK_DELTA = 0xA282EAD8


def _crc_table() -> list[int]:
    global _CRC_TABLE  # built lazily once (nothing at import time)
    if _CRC_TABLE is None:
        poly, table = 0x82F63B78, []  # Castagnoli polynomial, reflected
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ poly if c & 1 else c >> 1
            table.append(c)
        _CRC_TABLE = table
    return _CRC_TABLE


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``; crc32c(b"123456789") == 0xE3069283."""
    table, crc = _crc_table(), 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# ----------------------------------------------------------------------------- protobuf


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 two's complement, as protobuf encodes negatives
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_bytes(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def encode_event(
    wall_time: float,
    step: int = 0,
    scalars: dict[str, float] | None = None,
    file_version: str | None = None,
) -> bytes:
    """A serialized ``tensorflow.Event`` with simple-value scalar summaries."""
    out = bytearray(_varint(1 << 3 | 1) + struct.pack("<d", wall_time))
    out += _varint(2 << 3 | 0) + _varint(step)
    if file_version is not None:
        out += _field_bytes(3, file_version.encode())
    if scalars:
        summary = b"".join(
            _field_bytes(
                1, _field_bytes(1, tag.encode()) + _varint(2 << 3 | 5) + struct.pack("<f", float(v))
            )
            for tag, v in scalars.items()
        )
        out += _field_bytes(5, summary)
    return bytes(out)


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of a protobuf message (types 0, 1, 2, 5)."""
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _read_varint(buf, i)
        elif wt == 1:
            v, i = buf[i : i + 8], i + 8
        elif wt == 2:
            n, i = _read_varint(buf, i)
            v, i = buf[i : i + n], i + n
        elif wt == 5:
            v, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wt}")
        yield num, wt, v


def decode_event(buf: bytes) -> dict:
    """Inverse of ``encode_event``: {"wall_time", "step", "file_version"?, "scalars"}."""
    ev: dict = {"wall_time": 0.0, "step": 0, "scalars": {}}
    for num, _, v in _fields(buf):
        if num == 1:
            ev["wall_time"] = struct.unpack("<d", v)[0]
        elif num == 2:
            ev["step"] = v - (1 << 64) if v >= 1 << 63 else v
        elif num == 3:
            ev["file_version"] = v.decode()
        elif num == 5:
            for vnum, _, value in _fields(v):
                if vnum != 1:
                    continue
                tag, val = "", math.nan
                for fnum, _, fv in _fields(value):
                    if fnum == 1:
                        tag = fv.decode()
                    elif fnum == 2:
                        val = struct.unpack("<f", fv)[0]
                ev["scalars"][tag] = val
    return ev


# ----------------------------------------------------------------------------- records


def tfrecord(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return (
        header
        + struct.pack("<I", masked_crc32c(header))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


def read_tfrecords(path: str | Path) -> Iterator[bytes]:
    """Payloads of a TFRecord file; raises ValueError on a CRC mismatch."""
    buf = Path(path).read_bytes()
    i = 0
    while i + 12 <= len(buf):
        header = buf[i : i + 8]
        (n,) = struct.unpack("<Q", header)
        (hcrc,) = struct.unpack("<I", buf[i + 8 : i + 12])
        if hcrc != masked_crc32c(header):
            raise ValueError(f"{path}: bad length CRC at byte {i}")
        data = buf[i + 12 : i + 12 + n]
        if len(data) < n or i + 16 + n > len(buf):
            return  # truncated tail (writer killed): ignore like TensorBoard does
        (dcrc,) = struct.unpack("<I", buf[i + 12 + n : i + 16 + n])
        if dcrc != masked_crc32c(data):
            raise ValueError(f"{path}: bad data CRC at byte {i}")
        yield data
        i += 16 + n


def read_events(path: str | Path) -> list[dict]:
    """All events of one event file, decoded."""
    return [decode_event(r) for r in read_tfrecords(path)]


class EventWriter:
    """Appends scalar summaries to a new ``events.out.tfevents.*`` file in ``logdir``."""

    def __init__(self, logdir: str | Path):
        logdir = Path(logdir)
        logdir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        self.path = logdir / f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}"
        self._f = open(self.path, "ab")
        self._write(encode_event(now, 0, file_version="brain.Event:2"))

    def _write(self, event: bytes) -> None:
        self._f.write(tfrecord(event))

    def add_scalars(self, step: int, scalars: dict[str, float]) -> None:
        self._write(encode_event(time.time(), step, scalars))
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class MetricsLogger:
    """JSONL + TensorBoard scalars for the main rank; a no-op elsewhere (``enabled=False``).

    On resume from step ``resume_step`` the JSONL is rewritten without lines past that step,
    so a resumed run's file equals an uninterrupted run's.
    """

    def __init__(
        self,
        out_dir: str | Path,
        enabled: bool = True,
        resume_step: int | None = None,
        tensorboard: bool = True,
    ):
        self.enabled = enabled
        self.jsonl_path = Path(out_dir) / "metrics.jsonl"
        self._f = self._tb = None
        if not enabled:
            return
        self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.jsonl_path.exists():
            _truncate_jsonl(self.jsonl_path, resume_step)
        self._f = open(self.jsonl_path, "a")
        self._tb = EventWriter(Path(out_dir) / "tb") if tensorboard else None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, "time": round(time.time(), 3), **metrics}
        self._f.write(json.dumps(row) + "\n")
        self._f.flush()
        if self._tb is not None:
            nums = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
            self._tb.add_scalars(step, nums)

    def close(self) -> None:
        for f in (self._f, self._tb):
            if f is not None:
                f.close()
        self._f = self._tb = None


def read_jsonl(path: str | Path) -> list[dict]:
    """Complete lines of a metrics file (a torn last line from a kill is skipped)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _truncate_jsonl(path: Path, last_step: int) -> None:
    keep = [r for r in read_jsonl(path) if r.get("step", 0) <= last_step]
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in keep))
