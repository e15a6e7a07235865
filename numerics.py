"""What a run computes in, and on what: the training forward pass's precision, the CPU beneath it, and the device's
clock (synchronize).

The same seed trains other weights in bfloat16 than in float32, and other weights again in bfloat16 on
CPUs that round it differently (AMD EPYC, Intel Xeon with or without AMX), so every figure the project
writes carries this record: metrics.json, the model file, bench's report and each tune trial.
Evaluation, predict and serve always compute in float32. Nothing here imports torch at module level.
"""

import platform
from pathlib import Path

PRECISIONS = ("auto", "bf16", "fp32")
PRECISION_HELP = (
    "the training forward pass's precision: auto is bf16 on a CPU that computes bfloat16 natively "
    "(AVX-512 BF16 or AMX), else fp32; weights, gradients and the loss stay float32"
)


def bf16_native():
    """Whether oneDNN computes bfloat16 natively on this CPU (it reports no on AVX2, where it emulates it)."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision, device):
    """'bf16' or 'fp32' for a --precision of auto, bf16 or fp32 on device."""
    if precision == "auto":
        return "bf16" if device.type == "cpu" and bf16_native() else "fp32"
    return precision


def autocast_dtype(precision):
    import torch

    return torch.bfloat16 if precision == "bf16" else torch.float32


def synchronize(device):
    """Wait for the device's queued work, so that a clock read after it times the work (CUDA runs asynchronously)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_name():
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def numerics(device, precision):
    """The record of what a run on device in precision ('bf16' or 'fp32') computed in, and on what."""
    import torch

    return {
        "precision": precision,
        "device": str(device),
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_native": bf16_native(),
        "threads": torch.get_num_threads(),
    }


def describe_numerics(record):
    """One line for a run's log: 'bf16 on cpu (AMD EPYC, avx512, native bfloat16), 2 threads'."""
    native = "native bfloat16" if record["bf16_native"] else "no native bfloat16"
    return (
        f"{record['precision']} on {record['device']} ({record['cpu']}, {record['cpu_capability']}, {native}), "
        f"{record['threads']} thread{'s' if record['threads'] != 1 else ''}"
    )
