"""The kernels behind the first body convolution's width, alone: its 3x3 convolution (32 channels in, at 14x14) and
the BatchNorm after its max-pool (at 7x7), forward and backward on a training batch of 128 in the channels-last
layout training uses, for widths 16, 20 (the default's), 24 and 32. Medians of 60 calls, milliseconds.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/width_kernels.py fp32
    python docs/plateau/width_kernels.py fp32
    python docs/plateau/width_kernels.py bf16
"""

import statistics
import sys
import time

import torch

BATCH, WIDTHS = 128, (16, 20, 24, 32)


def milliseconds(step, calls=60):
    for _ in range(8):  # oneDNN builds its kernels on the first calls
        step()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def trained(layer, shape, dtype):
    """One forward and backward pass of layer on a channels-last batch of `shape`, under autocast in dtype."""
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_()

    def step():
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            out = layer(x)
        out.backward(torch.ones_like(out))

    return step


if __name__ == "__main__":
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[sys.argv[1]]
    torch.manual_seed(0)
    for width in WIDTHS:
        conv = torch.nn.Conv2d(32, width, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
        norm = torch.nn.BatchNorm2d(width)
        print(
            f"width {width}: convolution {milliseconds(trained(conv, (BATCH, 32, 14, 14), dtype)):.2f} ms, "
            f"BatchNorm {milliseconds(trained(norm, (BATCH, width, 7, 7), torch.float32)):.2f} ms",
            flush=True,
        )
