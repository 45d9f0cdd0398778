"""datasets/files.py: atomic writes leave either the old file or the new one, never a partial or a stray temp."""

import os
import stat

import pytest

from datasets.files import atomic_path, atomic_write, cache_root


def test_atomic_write_replaces_the_file_with_ordinary_permissions(tmp_path):
    path = tmp_path / "sub" / "table.csv"
    atomic_write(path, "a,b\n")
    atomic_write(path, b"c,d\n")
    assert path.read_bytes() == b"c,d\n" and os.listdir(path.parent) == ["table.csv"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "model.pt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["model.pt"]


def test_cache_root_order(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDS_BENCH_CACHE", str(tmp_path / "env"))
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert cache_root() == tmp_path / "env"
    monkeypatch.delenv("GRIDS_BENCH_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the default, spelled out: ~/.cache/grids-bench
    assert cache_root() == tmp_path / "home" / ".cache" / "grids-bench"
    assert cache_root("~/elsewhere") == tmp_path / "home" / "elsewhere"  # a `~` in the flag is expanded
