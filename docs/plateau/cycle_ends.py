"""The one-cycle schedule's two ends, which the search never had: the learning rate starts at lr / START_DIVISOR and
ends START_DIVISOR * END_DIVISOR times lower (OneCycleLR's defaults, 25 and 10,000: it ends at 4e-6, all but
stopped). "start-N" starts the warmup at lr / N; "end-N" ends the fall at lr / 25 / N, so that the last steps still
move the weights. Each seed trains each setting in turn with the default recipe (its views), on the training images
less the 5,000 held out; one JSON row per seed and setting, as inits.py's.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/cycle_ends.py 0,1,2,3,4 \
        default,start-5,start-100,end-10,end-100 --precision fp32
    python docs/plateau/cycle_ends.py 0,1,2,3,4 default,start-5,start-100,end-10,end-100 --precision bf16
"""

import sys
from pathlib import Path
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from views import print_rows_in_turn
from widths import patched_row

import train


def divisors(start, end):
    """train.OneCycleSGD with its schedule's start and end divisors set."""

    class Ends(train.OneCycleSGD):
        def __init__(self, *args, **kwargs):
            with patch.object(train, "START_DIVISOR", start), patch.object(train, "END_DIVISOR", end):
                super().__init__(*args, **kwargs)

    return Ends


SETTINGS = {
    "default": divisors(train.START_DIVISOR, train.END_DIVISOR),
    **{f"start-{n}": divisors(float(n), train.END_DIVISOR) for n in (5, 100)},
    **{f"end-{n}": divisors(train.START_DIVISOR, float(n)) for n in (10, 100)},
}

if __name__ == "__main__":
    print_rows_in_turn(patched_row(train, "OneCycleSGD", SETTINGS), sys.argv[1:])
