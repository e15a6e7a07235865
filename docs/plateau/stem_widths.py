"""The stem's width: the default's 32 channels at 14x14 against narrower ones. Float32 training on a CPU takes 1.09x the
earlier recipe's, and the warm profile puts the extra time in the wider layers at 14x14: the stem's convolution,
BatchNorm and ReLU over 32 channels, and the 32-to-20 convolution after it (docs/plateau.md). The architecture search
that chose 32 timed its trials on a GPU, where those layers cost little. Each seed trains every width in turn with
the default recipe (its views), on the training images less the 5,000 held out, each width first in its turn; one
JSON row per seed and width, as widths.py's (a width may carry +FIELD=VALUE changes to the recipe, as there).

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/stem_widths.py 0,1,2,3,4 32,28,24 \
        --precision fp32
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from views import print_rows_in_turn
from widths import width_rows

from config import architecture


def with_stem(width):
    """The default architecture with its stem `width` channels wide."""
    return {**architecture("default"), "stem": width}


if __name__ == "__main__":
    print_rows_in_turn(width_rows(with_stem, "stem"), sys.argv[1:])
