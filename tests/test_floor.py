"""bench/studies/floor.py: FLOPs and compulsory bytes of GEMMs and embedding bags, hand-computed from the shapes, and the
floor as a sum of per-kernel roofline bounds."""

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


def test_machine_rates_and_breakdown_are_measured():
    rates = machine_rates(min_run_time=0.05, gemm_n=128, stream_mib=8)
    assert rates["gemm_flops_per_s"] > 1e6 and rates["copy_bytes_per_s"] > 1e6 and rates["read_bytes_per_s"] > 1e6
    a = torch.randn(64, 64)
    parts = time_breakdown(lambda: [a @ a for _ in range(20)])
    assert parts["gemm"] > 0 and parts["wall"] >= parts["gemm"]
    assert sum(parts[k] for k in ("gemm", "embedding_bag", "other_aten", "python_numpy_scipy")) \
        == pytest.approx(max(parts["wall"], parts["gemm"] + parts["embedding_bag"] + parts["other_aten"]))
