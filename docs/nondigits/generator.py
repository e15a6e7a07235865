"""Study 8: what the training generator draws (outliers.KINDS), chosen on the validation split as study 7 chose the
loss (margins.py: the same held-out letters, shapes and curves, the same rule, the recipe's weight 0.03 and bounds
-6 and -2). Each seed trains every setting in turn. Held-out shapes are also given per kind. The evaluation's
non-digits (nondigits.py) are read too, for the record only. One JSON row per seed and setting (name, kinds, and
the share of each batch, 0.1 if not given):

    python docs/nondigits/generator.py '[["now", ["scribble", "marks", ...]]]' 0 1 2 3 4 >> generator.jsonl
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from margins import SHAPE_KINDS, flagged, read, study_data

import outliers
import train
from config import TrainConfig
from evaluation import predict_logits


def main(settings, seeds):
    validation, sets = study_data()
    kind_of_shape = torch.arange(len(sets["h_shapes"])) % len(SHAPE_KINDS)
    for seed in seeds:
        for name, kinds, *share in settings:
            outliers.KINDS = tuple(kinds)
            config = replace(TrainConfig(), seed=seed, nondigit_weight=0.03, nondigits=(*share, 0.1)[0])
            result = train.train_and_evaluate("default", config, torch.device("cpu"), validation)
            row = read(name, seed, result, validation["eval"][1], sets)
            shapes = flagged(result.model, predict_logits(result.model, sets["h_shapes"]))
            by_kind = (shapes[kind_of_shape == k].float().mean().item() for k in range(len(SHAPE_KINDS)))
            row["h_shape_kinds"] = {kind: round(part * 100) for kind, part in zip(SHAPE_KINDS, by_kind, strict=True)}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]), [int(seed) for seed in sys.argv[2:]])
