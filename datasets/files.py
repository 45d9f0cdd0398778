"""File helpers shared by every layer (the lowest floor, so data, checkpoints, job results and reports use one):
the cache root, atomic writes, an output folder's lock and reading a user's CSV/TSV table."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import filelock
import pandas as pd


def cache_root(cache_dir=None) -> Path:
    """Where processed data, surrogate checkpoints and job results are cached: `cache_dir`, else
    $GRIDS_BENCH_CACHE, else ~/.cache/grids-bench."""
    root = cache_dir or os.environ.get("GRIDS_BENCH_CACHE") or Path.home() / ".cache" / "grids-bench"
    return Path(root).expanduser()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file; mkstemp's temporary files are 0600


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a writer that wants a file name (torch.save, MuData.write); on
    success it is renamed onto `path` in one step, on error removed, so readers never see a half-written file.
    The result gets the permissions a plainly written file would have."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a hidden name: a writer killed mid-write leaves a stray `.name.tmp-…` that no reader of `*.json` etc. picks up
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write(path, content: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to `path` atomically; returns `path`."""
    with atomic_path(path) as tmp:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content, encoding="utf-8")
    return Path(path)


def move_aside(path, folder) -> Path | None:
    """Move a damaged cache file into `folder` (kept for inspection, out of the cache's way); None when it could
    not be moved (another run moved it first, or `folder` cannot be made): the caller recomputes either way."""
    path, folder = Path(path), Path(folder)
    dest = folder / path.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
    except OSError:
        return None
    return dest


class FolderLocked(RuntimeError):
    """Another process holds the folder's lock (see `folder_lock`)."""


@contextlib.contextmanager
def folder_lock(folder) -> Iterator[Path]:
    """Hold an exclusive lock on `folder` (a `.lock` file in it) for the block, so two runs writing the same output
    folder never interleave their files: the second raises `FolderLocked` at once (it never waits), naming the
    holder, before it writes anything. The lock is `filelock`'s: the kernel's on POSIX and Windows, so a killed
    holder releases it and a stale `.lock` file never blocks a rerun. Yields the `.lock` path.

    Who holds the lock is written beside it, in `.lock.holder`, not into `.lock`: that file belongs to filelock
    (some versions truncate it on open, Windows locks its bytes against reading)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path, holder = folder / ".lock", folder / ".lock.holder"
    lock = filelock.FileLock(path, timeout=0)  # timeout 0: one try, then Timeout
    try:
        lock.acquire()
    except filelock.Timeout:
        try:
            who = holder.read_text(encoding="utf-8").strip()
        except OSError:  # the holder has not written it yet
            who = ""
        raise FolderLocked(f"{folder} is being written by {who or 'another process'}; wait for it to finish or "
                           "choose another output folder") from None
    try:
        holder.write_text(f"pid {os.getpid()}", encoding="utf-8")
        yield path
    finally:
        try:
            holder.unlink(missing_ok=True)  # before the release, so a next holder's file is never the one removed
        finally:
            lock.release()


def read_table(path, **kwargs) -> pd.DataFrame:
    """A user's small table: tab-separated for `.tsv`/`.txt`, comma-separated otherwise."""
    path = Path(path)
    sep = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    return pd.read_csv(path, sep=sep, **kwargs)
