"""The stem, which the search only set the width of: the default's first layer is a 4x4 convolution with stride 2
(model.STEM_KERNEL), 28x28 to 14x14, then a BatchNorm. "stem-K" makes it KxK with padding (K - 1) // 2, the same
14x14 out, drawn after the default's weights (the generator moves on as for the default; as inits.py's settings). A
wider kernel sees more of each stroke at once, for 32 * (K^2 - 16) weights more (3: 224 fewer; 5: 288 more; 6: 640
more). "no-norm" drops the stem's BatchNorm for a bias on its convolution: the norm over 32 channels at 14x14 is the
step's largest memory-bound work. Each seed trains each setting in turn with the default recipe (its views), on the
training images less the 5,000 held out; one JSON row per seed and setting, as inits.py's.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/stems.py 0,1,2,3,4 \
        default,stem-3,stem-5,stem-6 --precision fp32
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/stems.py 0,1,2,3,4 default,no-norm \
        --precision fp32
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from inits import initialised
from torch import nn
from views import print_rows_in_turn
from widths import patched_row

import train


def stem_changed(kernel=None, norm=True):
    """What makes a model's stem convolution kernel x kernel (None: as it is), and drops its BatchNorm (a bias on the
    convolution instead) where norm is false: for inits.initialised."""

    def change(model):
        if kernel is None and norm:
            return
        stem = model.features[0]
        size = kernel or stem.kernel_size[0]
        model.features[0] = nn.Conv2d(1, stem.out_channels, size, 2, (size - 1) // 2, bias=not norm)
        if not norm:
            model.features[1] = nn.Identity()

    return change


SETTINGS = {
    name: initialised(stem_changed(**change))
    for name, change in {
        "default": {},
        **{f"stem-{k}": {"kernel": k} for k in (3, 5, 6)},
        "no-norm": {"norm": False},
    }.items()
}

if __name__ == "__main__":
    print_rows_in_turn(patched_row(train, "MNISTModel", SETTINGS), sys.argv[1:])
