"""Training seconds of the first STEPS steps of the default recipe on each layout, the layouts alternated round by
round (each first in its turn; a round before them warms up); one JSON row per layout: the median, its ratio to the
first layout's, each run, and what it computed in (the training's own lines go to stdout too: grep the rows). Run
once per numeric path, on quiet cores:

    python docs/plateau/layout_times.py "16/16,32,M,32,M/24;24/16,M,40,M/32;16/16,M,48,M/32" bf16 | grep '^{'  # AMX
    ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 python docs/plateau/layout_times.py "..." bf16  # AVX-512 BF16, no AMX
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/layout_times.py "..." fp32
"""

import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from views import in_turn

from cli import resolve_data_dir
from config import architecture, recipe_model
from numerics import numerics
from train import fresh_model, load_data, train

STEPS, ROUNDS = 200, 4


def seconds(layout, config, contrast_stretch, data, precision):
    model = fresh_model(architecture(layout), config, torch.device("cpu"), contrast_stretch)
    start = time.perf_counter()
    train(model, *data["train"], replace(config, max_steps=STEPS, log_every=STEPS), precision)
    return time.perf_counter() - start


def main(layouts, precision):
    data = load_data(resolve_data_dir(None), torch.device("cpu"))
    _, config, contrast_stretch = recipe_model("default", "robust")
    times = {layout: [] for layout in layouts}
    for turn in range(ROUNDS + 1):
        for layout in in_turn(layouts, turn):
            took = seconds(layout, config, contrast_stretch, data, precision)
            if turn:
                times[layout].append(took)
    first = statistics.median(times[layouts[0]])
    record = numerics(torch.device("cpu"), precision)
    for layout, runs in times.items():
        median = statistics.median(runs)
        row = {"layout": layout, "median_s": round(median, 3), "vs_first": round(median / first, 3)}
        print(json.dumps({**row, "runs": [round(run, 2) for run in runs], "numerics": record}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1].split(";"), sys.argv[2])
