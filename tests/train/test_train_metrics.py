"""Metrics files: CRC-32C against published check values, TensorBoard event files that parse
back record by record (CRCs verified), JSONL truncation on resume, progress line."""

from __future__ import annotations

import struct

import pytest

from unif2ace.train.metrics import (
    MetricsLogger,
    crc32c,
    decode_event,
    encode_event,
    masked_crc32c,
    read_events,
    read_jsonl,
    read_tfrecords,
    tfrecord,
)
from unif2ace.train.progress import Progress, format_duration


def test_crc32c_check_values():
    # RFC 3720 appendix B.4 and the CRC catalogue's check value for CRC-32/ISCSI.
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(bytes([0xFF] * 32)) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert masked_crc32c(b"") == ((0 >> 15 | 0 << 17) + 0xA282EAD8) & 0xFFFFFFFF


def test_event_encoding_round_trips_including_negative_steps():
    buf = encode_event(1234.5, -3, {"loss": 1.25, "a/b": -2.0}, file_version="x")
    ev = decode_event(buf)
    assert ev == {
        "wall_time": 1234.5,
        "step": -3,
        "file_version": "x",
        "scalars": {"loss": 1.25, "a/b": -2.0},
    }


def test_logger_writes_parseable_event_file_and_jsonl(tmp_path):
    log = MetricsLogger(tmp_path)
    log.log(1, {"loss": 2.5, "lr": 1e-3})
    log.log(2, {"loss": 2.25, "eval/acc": 0.5, "note": "text is JSONL-only"})
    log.close()
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 2.5), (2, 2.25)]
    (event_file,) = (tmp_path / "tb").glob("events.out.tfevents.*")
    events = read_events(event_file)
    assert events[0]["file_version"] == "brain.Event:2"
    assert [(e["step"], e["scalars"]) for e in events[1:]] == [
        (1, {"loss": 2.5, "lr": struct.unpack("<f", struct.pack("<f", 1e-3))[0]}),
        (2, {"loss": 2.25, "eval/acc": 0.5}),
    ]


def test_corrupt_record_is_detected_and_torn_tail_ignored(tmp_path):
    good = tfrecord(encode_event(1.0, 1, {"x": 1.0}))
    path = tmp_path / "events"
    path.write_bytes(good + good[:10])  # a writer killed mid-record
    assert len(list(read_tfrecords(path))) == 1
    bad = bytearray(good)
    bad[20] ^= 0xFF
    path.write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="CRC"):
        list(read_tfrecords(path))


def test_resumed_logger_drops_lines_after_the_checkpoint(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=False)
    for step in range(1, 6):
        log.log(step, {"loss": float(step)})
    log.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # torn line from a SIGKILL
    log = MetricsLogger(tmp_path, resume_step=3, tensorboard=False)
    log.log(4, {"loss": 40.0})
    log.close()
    assert [(r["step"], r["loss"]) for r in read_jsonl(tmp_path / "metrics.jsonl")] == [
        (1, 1.0),
        (2, 2.0),
        (3, 3.0),
        (4, 40.0),
    ]


def test_disabled_logger_writes_nothing(tmp_path):
    log = MetricsLogger(tmp_path / "x", enabled=False)
    log.log(1, {"loss": 1.0})
    log.close()
    assert not (tmp_path / "x").exists()


def test_progress_line_has_components_rate_and_eta():
    now = [100.0]
    p = Progress(total_steps=100, start_step=20, clock=lambda: now[0])
    now[0] += 10.0
    p.add_tokens(5000)
    line = p.line(30, {"loss": 1.23456, "img": 0.5, "txt": 0.25, "lr": 3e-4, "grad_norm": 0.9})
    assert line.startswith("step  30/100  30.0%")
    assert "loss 1.2346" in line and "img 0.5 txt 0.25" in line and "lr 3.00e-04" in line
    assert "500 tok/s" in line  # 5000 tokens in 10 s
    assert "0:00:10 < 0:01:10" in line  # 10 steps in 10 s, 70 to go
    assert format_duration(3725) == "1:02:05" and format_duration(float("nan")) == "?"
