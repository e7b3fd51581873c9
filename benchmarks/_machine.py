"""Describes the machine a benchmark ran on, for the tables in BENCHMARKS.md."""

import os
import platform

import torch


def describe_machine() -> str:
    """Returns e.g. 'AMD EPYC 7B13 (2 cores), torch 2.13.0+cpu, 2 threads' or the GPU's name."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    described = f"{cpu} ({os.cpu_count()} cores), torch {torch.__version__}, {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        described += f", GPU {torch.cuda.get_device_name(0)}"
    if hasattr(os, "getloadavg"):
        described += f", load average {os.getloadavg()[0]:.1f} (1 min)"
    return described
