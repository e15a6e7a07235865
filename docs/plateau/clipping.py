"""Gradient clipping, which the search never had: the recipe's peak learning rate (0.983) is high, and a step on an
odd batch moves every weight by its whole gradient. "autoclip-P" (AutoClip, Seetharaman et al. 2020) scales each
step's loss gradient down to the P-th percentile of the gradient norms seen so far in the run, where it lies above
it: no norm to choose by hand, and a step is clipped only against the run's own history. The weight decay is added
after, as the optimizer does. Each seed trains each setting in turn with the default recipe (its views), on the
training images less the 5,000 held out; one JSON row per seed and setting, as inits.py's.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/clipping.py 0,1,2,3,4 \
        default,autoclip-10,autoclip-50 --precision fp32
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/clipping.py 0,1,2,3,4 default,autoclip-3 \
        --precision fp32
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import torch
from views import print_rows_in_turn
from widths import patched_row

import train


def autoclip(percentile):
    """train.OneCycleSGD with each step's gradients clipped to the percentile of the norms seen so far."""

    class AutoClipped(train.OneCycleSGD):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.norms = []

        @torch.no_grad()
        def step(self):
            grads = [p.grad for p in self.parameters]
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))).item()
            self.norms.append(norm)
            limit = np.percentile(self.norms, percentile)
            if norm > limit:
                torch._foreach_mul_(grads, limit / norm)
            super().step()

    return AutoClipped


SETTINGS = {"default": train.OneCycleSGD, **{f"autoclip-{p}": autoclip(p) for p in (3, 10, 50)}}

if __name__ == "__main__":
    print_rows_in_turn(patched_row(train, "OneCycleSGD", SETTINGS), sys.argv[1:])
