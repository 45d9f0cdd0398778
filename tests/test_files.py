"""datasets/files.py: atomic writes leave either the old file or the new one, never a partial or a stray temp;
an output folder has one writer at a time."""

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from datasets.files import FolderLocked, atomic_path, atomic_write, cache_root, folder_lock


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


def test_a_second_holder_in_the_same_process_is_refused_at_once(tmp_path):
    with folder_lock(tmp_path / "out") as path:
        assert path == tmp_path / "out" / ".lock"
        with pytest.raises(FolderLocked, match=f"out is being written by pid {os.getpid()}; wait for it"), \
                folder_lock(tmp_path / "out"):
            pass
        with folder_lock(tmp_path / "other"):  # another folder is free
            pass
    with folder_lock(tmp_path / "out"):  # released on exit
        pass
    assert not (tmp_path / "out" / ".lock.holder").exists()  # the holder's name goes with the hold


def test_a_folder_held_by_another_process_is_refused_without_waiting(tmp_path):
    """Across processes, the way two `python -m bench run --out` would meet: the child holds the lock until told to
    let go; the parent's try fails at once, naming the child; once the child is gone the folder is free again."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from datasets.files import folder_lock
            with folder_lock({str(tmp_path / "out")!r}):
                print("held", flush=True)
                sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(FolderLocked, match=f"is being written by pid {child.pid}; wait for it to finish"), \
                folder_lock(tmp_path / "out"):
            pass
    finally:
        child.stdin.close()  # the child's readline returns: it leaves the block
        assert child.wait(timeout=60) == 0
    with folder_lock(tmp_path / "out"):
        pass


def test_a_killed_holder_leaves_no_lock_behind(tmp_path):
    """A run killed mid-write leaves `.lock` and `.lock.holder` on disk; neither blocks the next run."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from datasets.files import folder_lock
            with folder_lock({str(tmp_path / "out")!r}):
                print("held", flush=True)
                time.sleep(600)
        """)],
        stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        assert child.stdout.readline().strip() == "held"
    finally:
        child.kill()
        child.wait(timeout=60)
    assert (tmp_path / "out" / ".lock.holder").exists()
    with folder_lock(tmp_path / "out"):
        assert (tmp_path / "out" / ".lock.holder").read_text() == f"pid {os.getpid()}"
