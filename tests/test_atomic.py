"""The one atomic writer: the destination holds the old bytes or the new, never a mix."""

import json
import stat

import pytest

from unif2ace.atomic import TMP_PREFIX, atomic_path, write_json_atomic, write_text_atomic


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(TMP_PREFIX))


def test_text_lands_whole_with_a_shared_mode_and_no_temp_left(tmp_path):
    path = tmp_path / "new" / "deeper" / "report.md"  # parents are created
    write_text_atomic(path, "héllo\n")
    assert path.read_text(encoding="utf-8") == "héllo\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert _leftovers(path.parent) == []
    write_text_atomic(path, "second", fsync=True)
    assert path.read_text() == "second" and _leftovers(path.parent) == []


def test_destination_keeps_old_bytes_until_the_write_completes(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"old": 1})
    with atomic_path(path) as tmp:
        tmp.write_text('{"new": ')  # half-written
        assert json.loads(path.read_text()) == {"old": 1}  # a reader meanwhile sees the old file
        assert tmp.parent == path.parent and tmp.name.startswith(TMP_PREFIX)
        tmp.write_text('{"new": 2}')
    assert json.loads(path.read_text()) == {"new": 2}


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "state.json"
    write_json_atomic(path, {"step": 3})
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("torn")
            raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"step": 3}
    assert _leftovers(tmp_path) == []


def test_concurrent_writers_never_share_a_temporary_file(tmp_path):
    path = tmp_path / "out.json"
    with atomic_path(path) as a, atomic_path(path) as b:
        assert a != b
        a.write_text("A")
        b.write_text("B")
    assert path.read_text() == "A"  # the outer context exits last: last rename wins
    assert _leftovers(tmp_path) == []


def test_json_options(tmp_path):
    path = tmp_path / "x.json"
    write_json_atomic(path, {"b": 1, "a": 2})
    assert path.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    write_json_atomic(path, {"b": 1, "a": 2}, sort_keys=False, indent=None)
    assert path.read_text() == '{"b": 1, "a": 2}\n'
