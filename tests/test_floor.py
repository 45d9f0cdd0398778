"""bench/studies/floor.py: FLOPs and compulsory bytes of GEMMs and embedding bags, hand-computed from the shapes; the
floor as a sum of per-kernel roofline bounds; machine rates as hand-counted work over the measured time; and each kind
of work in its own bucket of the time breakdown."""

import time

import pytest
import torch
import torch.nn.functional as F

from bench.studies.floor import KernelCount, count_kernels, machine_rates, time_breakdown


def test_a_linear_layer_forward_and_backward():
    """addmm forward (10×64 @ 64×32 + bias) then two mm in the backward (input and weight gradients)."""
    lin = torch.nn.Linear(64, 32)
    x = torch.randn(10, 64, requires_grad=True)
    _, c = count_kernels(lambda: lin(x).sum().backward())
    flops = 2 * 10 * 64 * 32
    assert [k for k, _, _ in c.kernels] == ["gemm"] * 3
    assert c.gemm_flops == 3 * flops
    # forward: bias 32 + x 640 + W 2,048 + out 320 floats; each backward mm reads two operands, writes one
    assert c.kernels[0][2] == 4 * (32 + 640 + 2048 + 320)
    assert sorted(b for _, _, b in c.kernels[1:]) == [4 * (320 + 2048 + 640), 4 * (320 + 640 + 2048)]


def test_an_embedding_bag_with_and_without_weights():
    table = torch.randn(100, 8)
    idx, offsets = torch.randint(0, 100, (50,)), torch.tensor([0, 20])
    _, weighted = count_kernels(lambda: F.embedding_bag(idx, table, offsets, mode="sum",
                                                        per_sample_weights=torch.ones(50)))
    # 50 gathered rows × 8, a multiply-add each; bytes: 52 int64 indices+offsets, 50 weights, ≤ 50 rows, 2 bags
    assert weighted.kernels == [("bag", 2 * 50 * 8, 8 * 52 + 4 * 50 + 4 * 50 * 8 + 4 * 2 * 8)]
    _, plain = count_kernels(lambda: F.embedding_bag(torch.randint(0, 4, (50,)), table[:4], offsets, mode="sum"))
    # the rows it can touch are bounded by the table: 4 rows, not 50
    assert plain.kernels == [("bag", 50 * 8, 8 * 52 + 4 * 4 * 8 + 4 * 2 * 8)]


def test_the_floor_is_the_sum_of_per_kernel_bounds():
    c = KernelCount()
    c.add("gemm", 4e9, 1e6)  # compute-bound at 1 GFLOP/s: 4 s
    c.add("bag", 1e3, 2e9)  # memory-bound at 1 GB/s: 2 s
    assert c.floor_seconds(1e9, 1e9) == pytest.approx(6.0)
    assert c.minus(KernelCount(), 2) == {"gemm_flops": 2e9, "gemm_bytes": 5e5, "bag_flops": 500.0,
                                         "bag_bytes": 1e9}


def test_a_plain_matmul_and_a_batched_one_by_hand():
    """m × k @ k × n with m, k, n all different, so a transposed or swapped shape shows: 2·m·n·k FLOPs, and both
    operands read once and the output written once in float32."""
    m, k, n = 3, 5, 7
    _, c = count_kernels(lambda: torch.randn(m, k) @ torch.randn(k, n))
    assert c.kernels == [("gemm", 2 * m * n * k, 4 * (m * k + k * n + m * n))]
    _, batched = count_kernels(lambda: torch.bmm(torch.randn(2, m, k), torch.randn(2, k, n)))
    assert batched.kernels == [("gemm", 2 * 2 * m * n * k, 4 * 2 * (m * k + k * n + m * n))]


def test_machine_rates_divide_the_hand_counted_work_by_the_measured_time(monkeypatch):
    """A timer that reports 0.5 s for every statement: the rates are then the work by hand over 0.5 s, with the
    copy counted as read + write and the sum as a read only, on arrays of the requested sizes."""
    from types import SimpleNamespace

    from bench.studies import floor

    seen = {}

    class HalfSecondTimer:
        def __init__(self, stmt, globals, num_threads):
            seen[stmt] = globals

        def blocked_autorange(self, min_run_time):
            return SimpleNamespace(median=0.5)

    monkeypatch.setattr(floor, "benchmark", SimpleNamespace(Timer=HalfSecondTimer))
    rates = machine_rates(min_run_time=0.01, gemm_n=16, stream_mib=2)
    floats = 2 * 2**20 // 4  # 2 MiB of float32
    assert rates["gemm_flops_per_s"] == 2 * 16**3 / 0.5
    assert rates["copy_bytes_per_s"] == 2 * 4 * floats / 0.5 and rates["read_bytes_per_s"] == 4 * floats / 0.5
    assert seen["torch.mm(a, b)"]["a"].shape == (16, 16) and seen["src.sum()"]["src"].numel() == floats


def test_time_breakdown_puts_each_kind_of_work_in_its_own_bucket():
    """GEMMs only: the time is GEMM time, none of it embedding-bag time. Weighted sum bags only (the surrogate's
    kind): the other way round (the bag kernel, not its small setup ops, takes most of it). A 50 ms sleep: no aten
    time at all, and at least the 50 ms it slept outside the kernels (the Python share)."""
    a, table = torch.randn(256, 256), torch.randn(1000, 64)
    idx, offsets, w = torch.randint(0, 1000, (100_000,)), torch.arange(0, 100_000, 1000), torch.rand(100_000)
    gemms = time_breakdown(lambda: [torch.mm(a, a) for _ in range(3)])
    assert gemms["gemm"] > gemms["other_aten"] and gemms["embedding_bag"] == 0
    bags = time_breakdown(lambda: [F.embedding_bag(idx, table, offsets, mode="sum", per_sample_weights=w)
                                   for _ in range(3)])
    assert bags["embedding_bag"] > bags["other_aten"] and bags["gemm"] == 0
    sleep = time_breakdown(lambda: time.sleep(0.05))
    assert sleep["gemm"] == sleep["embedding_bag"] == sleep["other_aten"] == 0
    assert sleep["python_numpy_scipy"] >= 0.05 - 1e-3  # time.sleep sleeps at least as long as asked
