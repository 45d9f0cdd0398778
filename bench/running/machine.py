"""What machine a run ran on, for its header: the CPU model and core count (times and the last digits of float32
sums depend on them), the torch build and the device. Bit-identical results are promised only between runs on
machines with the same description."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's model name ('Intel(R) Xeon(R) Processor', 'AMD EPYC 7B13'), or the platform's best guess."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_machine(device: str = "auto") -> dict:
    """{'cpu', 'cores' (usable by this process), 'torch', 'device'}; `device` as `--device` takes it (auto: the
    GPU when there is one)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 0
    gpu = torch.cuda.get_device_name(0) if device in ("auto", "cuda") and torch.cuda.is_available() else None
    return {"cpu": cpu_model(), "cores": cores, "torch": torch.__version__, "device": gpu or "cpu"}


def machine_phrase(machine: dict) -> str:
    """'2 CPU cores (Intel(R) Xeon(R) Processor), torch 2.13.0+cpu' for a header."""
    where = f"{machine['cores']} CPU cores ({machine['cpu']})"
    if machine.get("device", "cpu") != "cpu":
        where += f" and {machine['device']}"
    return f"{where}, torch {machine['torch']}"
