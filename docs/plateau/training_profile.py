"""Where a training step's time goes: the default recipe against the earlier one (the baseline whose training time
the issue's target is), each on its own layout, the first STEPS steps under torch's profiler, the same seed. Prints
one JSON row per recipe: the wall seconds, and the self CPU milliseconds of each operator and input shape that take
more than a hundredth of the whole.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/training_profile.py \
        robust,earlier,robust,earlier,robust,earlier > docs/plateau/training-profile-fp32-avx2.jsonl
"""

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from torch.profiler import ProfilerActivity, profile

from cli import resolve_data_dir
from config import recipe_model
from train import fresh_model, load_data, train

STEPS = 150


def profiled(recipe, data, precision="fp32"):
    arch, config, contrast_stretch = recipe_model("default", recipe)
    model = fresh_model(arch, config, torch.device("cpu"), contrast_stretch)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiler:
        start = time.perf_counter()
        train(model, *data["train"], replace(config, max_steps=STEPS), precision)
        seconds = time.perf_counter() - start
    rows = profiler.key_averages(group_by_input_shape=True)
    total = sum(row.self_cpu_time_total for row in rows)
    largest = sorted(rows, key=lambda row: -row.self_cpu_time_total)
    ops = {
        f"{row.key} {row.input_shapes[0] if row.input_shapes else ''}": round(row.self_cpu_time_total / 1000, 1)
        for row in largest
        if row.self_cpu_time_total > total / 100
    }
    return {"recipe": recipe, "steps": STEPS, "wall_s": round(seconds, 3), "self_cpu_ms": ops}


if __name__ == "__main__":
    data = load_data(resolve_data_dir(), torch.device("cpu"), validation=True)
    for recipe in sys.argv[1].split(","):
        print(json.dumps(profiled(recipe, data)), flush=True)
