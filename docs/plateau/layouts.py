"""Other layouts within the 25,000-parameter budget that keep the first body convolution at an evenly blocked 24
channels (faster on a CPU than the default's 20; docs/plateau/widths.py) and spend the parameters it leaves on the
second convolution or the head. Each seed trains every layout in turn with the default recipe (its views), on the
training images less the 5,000 held out; one JSON row per seed and layout, as widths.py's with "arch" for "width".
Layouts are STEM/BODY/HEAD notations (config.architecture), separated by semicolons:

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/layouts.py 0,1,2,3,4 \\
        "default;32/24,M,36,M/28;32/24,M,40,M/20" --precision fp32
"""

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from views import in_turn, study_data
from widths import scored

from config import TrainConfig
from numerics import PRECISIONS

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("seeds", type=lambda text: [int(seed) for seed in text.split(",")])
    parser.add_argument("layouts", type=lambda text: text.split(";"))
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    args = parser.parse_args()
    data, suite, suite_labels = study_data()
    for turn, seed in enumerate(args.seeds):
        for arch in in_turn(args.layouts, turn):
            figures = scored(arch, replace(TrainConfig(), seed=seed), args.precision, data, suite, suite_labels)
            print(json.dumps({"seed": seed, "arch": arch, **figures}), flush=True)
