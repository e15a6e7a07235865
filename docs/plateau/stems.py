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

from torch import nn
from views import print_rows_in_turn
from widths import patched_row

import train
from model import MNISTModel


def with_stem(kernel=None, norm=True):
    """MNISTModel with its stem's convolution made kernel x kernel (None: as it is), and without its BatchNorm (a bias
    on the convolution instead) where norm is false."""

    class Stem(MNISTModel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if kernel is None and norm:
                return
            stem = self.features[0]
            size = kernel or stem.kernel_size[0]
            self.features[0] = nn.Conv2d(1, stem.out_channels, size, 2, (size - 1) // 2, bias=not norm)
            if not norm:
                self.features[1] = nn.Identity()

    return Stem


SETTINGS = {
    "default": with_stem(),
    **{f"stem-{k}": with_stem(kernel=k) for k in (3, 5, 6)},
    "no-norm": with_stem(norm=False),
}

if __name__ == "__main__":
    print_rows_in_turn(patched_row(train, "MNISTModel", SETTINGS), sys.argv[1:])
