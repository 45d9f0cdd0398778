"""Peak resident memory of a block of work, sampled in a background thread (sees torch's C++ allocations, which
tracemalloc cannot)."""

from __future__ import annotations

import ctypes
import gc
import resource
import sys
import threading

import psutil


class PeakRSS:
    """`with PeakRSS() as m: ...; m.peak_mb` — peak RSS in MiB during the block, and `m.delta_mb` over the start."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self.start_mb = self.peak_mb = 0.0

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2**20)

    def __enter__(self) -> "PeakRSS":
        self.start_mb = self.peak_mb = self._proc.memory_info().rss / 2**20
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2**20)

    @property
    def delta_mb(self) -> float:
        return self.peak_mb - self.start_mb


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc only), so RSS increases see new
    allocations rather than pages freed by earlier work."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: increases are only a looser lower bound
        pass


def process_peak_rss_mb() -> float:
    """The peak resident memory of this process since it started, in MiB (getrusage's ru_maxrss: KiB on Linux,
    bytes on macOS). Work in dask worker processes is not included."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
