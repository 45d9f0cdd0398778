"""The floor of a kernel: the least time this machine could take for the arithmetic it does.

A step is a sequence of kernels (GEMMs, embedding bags, elementwise ops). Each kernel needs at least
max(FLOPs / F, bytes / B) seconds, where F is the machine's GEMM throughput and B its memory bandwidth, both measured
in the same process (`machine_rates`), and bytes are the kernel's compulsory traffic: every operand read once and
its output written once (float32 values, int64 indices), counted from the shapes. The floor of a step is the sum
of its kernels' floors (they run one after another): a roofline bound per kernel, not per step.

What is counted (`count_kernels`): every GEMM (aten mm / addmm / bmm, forward and backward; FLOPs from torch's
own FlopCounterMode formulas) and every embedding bag (2 FLOPs per gathered element with per-sample weights, 1
without; bytes: indices, offsets, weights, the rows it can touch — at most the table — and its output). Elementwise
ops, indexing, top-k and the Python / NumPy / SciPy work between kernels are left out of the floor on purpose: they
are what a fused implementation would not need, so they are part of the gap, and `time_breakdown` says how much of
the measured time they take.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils import benchmark
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

F32, I64 = 4, 8  # bytes per float32 value and per int64 index
GEMM_OPS = ("mm", "addmm", "bmm")
BAG_OPS = ("_embedding_bag", "_embedding_bag_forward_only")
TOTALS = ("gemm_flops", "gemm_bytes", "bag_flops", "bag_bytes")


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


@dataclass
class KernelCount:
    """FLOPs and compulsory bytes of the GEMMs and embedding bags one call of a function ran, kernel by kernel."""

    kernels: list = field(default_factory=list)  # (kind, flops, bytes) per kernel call, kind "gemm" or "bag"

    def add(self, kind: str, flops: float, nbytes: float) -> None:
        self.kernels.append((kind, float(flops), float(nbytes)))

    def totals(self) -> dict:
        """{gemm,bag}_{flops,bytes} summed over the recorded kernels."""
        out = dict.fromkeys(TOTALS, 0.0)
        for kind, flops, nbytes in self.kernels:
            out[f"{kind}_flops"] += flops
            out[f"{kind}_bytes"] += nbytes
        return out

    @property
    def gemm_flops(self) -> float:
        return self.totals()["gemm_flops"]

    def floor_seconds(self, gemm_flops_per_s: float, bytes_per_s: float) -> float:
        """Σ over kernels of max(FLOPs / F, bytes / B)."""
        return sum(max(f / gemm_flops_per_s, b / bytes_per_s) for _, f, b in self.kernels)

    def minus(self, other: "KernelCount", times: int = 1) -> dict:
        """Totals of (self − other) / times: the per-step arithmetic from two runs of different lengths."""
        mine, theirs = self.totals(), other.totals()
        return {k: (mine[k] - theirs[k]) / times for k in TOTALS}


def count_kernels(fn) -> tuple[object, KernelCount]:
    """Run `fn()` once under a dispatch mode that records every GEMM (FLOPs by torch's own FlopCounterMode
    formulas) and embedding bag with its compulsory bytes; returns (fn's result, the count). torch's FlopCounterMode
    itself cannot be used here: its module tracker breaks `torch.autograd.grad` on a leaf (what GRIDS calls)."""
    aten = torch.ops.aten
    count = KernelCount()

    def shape(x):
        return tuple(x.shape) if isinstance(x, torch.Tensor) else x

    def gemm(args, kwargs, out):
        shapes = [shape(a) for a in args if isinstance(a, torch.Tensor)]
        formula = flop_registry[aten.mm if len(shapes[-1]) == 2 else aten.bmm].__wrapped__
        flops = formula(*shapes[-2:], out_shape=shape(out))  # addmm: the bias is read, not multiplied
        count.add("gemm", flops, F32 * (sum(_numel(s) for s in shapes) + _numel(shape(out))))

    def bag(args, kwargs, out):
        weight, indices, offsets = (shape(a) for a in args[:3])
        psw = kwargs.get("per_sample_weights", args[6] if len(args) > 6 else None)
        n, emb = _numel(indices), int(weight[1])
        flops = (2 if psw is not None else 1) * n * emb
        nbytes = I64 * (n + _numel(offsets)) + (F32 * n if psw is not None else 0)
        nbytes += F32 * (min(n, int(weight[0])) * emb + _numel(shape(out[0])))  # rows it can touch, its output
        count.add("bag", flops, nbytes)

    handlers = {aten.mm: gemm, aten.addmm: gemm, aten.bmm: gemm, aten._embedding_bag: bag,
                aten._embedding_bag_forward_only: bag}

    class Counter(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            handler = handlers.get(func._overloadpacket)
            if handler is not None:
                handler(args, kwargs or {}, out)
            return out

    with Counter():
        out = fn()
    return out, count


def machine_rates(min_run_time: float = 1.0, gemm_n: int = 2048, stream_mib: int = 256) -> dict:
    """This process's float32 GEMM throughput (FLOP/s, an n × n × n product on torch's current thread count) and
    memory bandwidth (bytes/s, the better of a STREAM-style copy, counted as read + write, and a read-only sum over
    arrays far larger than the caches)."""
    def rate(stmt, env, work):
        m = benchmark.Timer(stmt=stmt, globals=env, num_threads=torch.get_num_threads()
                            ).blocked_autorange(min_run_time=min_run_time)
        return work / m.median

    a, b = torch.randn(gemm_n, gemm_n), torch.randn(gemm_n, gemm_n)
    n = stream_mib * 2**20 // F32
    src, dst = torch.randn(n), torch.empty(n)
    return {"gemm_flops_per_s": rate("torch.mm(a, b)", {"torch": torch, "a": a, "b": b}, 2.0 * gemm_n**3),
            "copy_bytes_per_s": rate("dst.copy_(src)", {"dst": dst, "src": src}, 2.0 * F32 * n),
            "read_bytes_per_s": rate("src.sum()", {"src": src}, 1.0 * F32 * n),
            "gemm_n": gemm_n, "stream_mib": stream_mib}


def bandwidth(rates: dict) -> float:
    return max(rates["copy_bytes_per_s"], rates["read_bytes_per_s"])


GEMM_NAMES = {f"aten::{op}" for op in GEMM_OPS}
BAG_NAMES = {"aten::embedding_bag", *(f"aten::{op}" for op in BAG_OPS)}


def time_breakdown(fn) -> dict:
    """Where one call of `fn` spends its wall time, in seconds, from torch.profiler's self CPU time per aten op:
    GEMMs, embedding bags, every other aten op, and the rest (Python, NumPy, SciPy and dispatch between ops).
    Profiling adds overhead to each op, so the shares of `wall`, not the absolute seconds, are what to read."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        fn()
        wall = time.perf_counter() - t0
    parts = {"gemm": 0.0, "embedding_bag": 0.0, "other_aten": 0.0}
    for e in prof.key_averages():
        if not e.key.startswith("aten::"):
            continue
        s = e.self_cpu_time_total / 1e6
        parts["gemm" if e.key in GEMM_NAMES else "embedding_bag" if e.key in BAG_NAMES else "other_aten"] += s
    parts["python_numpy_scipy"] = max(0.0, wall - sum(parts.values()))
    return {"wall": wall, **parts}
