"""Study 11: does capacity move the front? The non-digit recipe (weight 0.03, study 8's kinds) trained on models
of 1x, 2.3x and 3.9x the default's parameters (the larger two beyond the project's 25,000: a probe, not a
candidate), read as study 7 reads (margins.py: held-out letters, shapes and curves; the evaluation's non-digits for
the record only). Each seed trains every model in turn. One JSON row per seed and architecture:

    python docs/nondigits/capacity.py default 48/32,M,48,M/40 64/40,M,64,M/56 -- 0 1 2 3 4 >> capacity.jsonl
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from margins import read, study_data

import train
from config import TrainConfig
from model import count_parameters


def main(architectures, seeds):
    validation, sets = study_data()
    for seed in seeds:
        for arch in architectures:
            config = replace(TrainConfig(), seed=seed, nondigit_weight=0.03)
            result = train.train_and_evaluate(arch, config, torch.device("cpu"), validation)
            row = read(arch, seed, result, validation["eval"][1], sets)
            print(json.dumps({**row, "parameters": count_parameters(result.model)}), flush=True)


if __name__ == "__main__":
    split = sys.argv.index("--")
    main(sys.argv[1:split], [int(seed) for seed in sys.argv[split + 1 :]])
