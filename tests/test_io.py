"""One atomic write: the target is the old file or the whole new one; no temporary file is left."""

import pytest

from sbrnn.io import atomic_write, atomic_write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_text(target, "old")

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old" and sorted(p.name for p in target.parent.iterdir()) == ["a.json"]


def test_the_temporary_name_keeps_the_suffix(tmp_path):
    seen = []
    atomic_write(tmp_path / "model.ubj", lambda tmp: seen.append(tmp.name) or tmp.write_bytes(b"x"))
    assert seen[0].endswith(".ubj") and (tmp_path / "model.ubj").read_bytes() == b"x"
