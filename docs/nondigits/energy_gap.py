"""The measurement behind tests/test_outliers.py's energy-gap floor: for each seed, 50 steps on the first 6,400
training images without and with configs/nondigits.json's weight (float32), then the median energy of 256 held-out
non-digits less that of the first 512 test digits. One line per seed: the two gaps, their ratio and difference.

    python docs/nondigits/energy_gap.py 0 1 2 3 4 5
"""

import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch

import outliers
from calibration import energy
from cli import resolve_data_dir
from config import TrainConfig, recipe_file
from model import MNISTModel
from train import load_data, train


def gaps(mnist, seed, weights):
    images, labels = (tensor[:6400] for tensor in mnist["train"])
    held_out = outliers.draw(256, torch.Generator().manual_seed(2**32 + 1))
    found = []
    for weight in weights:
        torch.manual_seed(seed)
        model = MNISTModel()
        config = replace(TrainConfig(), seed=seed, nondigit_weight=weight, max_steps=50)
        train(model, images, labels, config, "fp32")
        with torch.no_grad():
            model.eval()
            digits, others = energy(model(mnist["eval"][0][:512]), 1.0), energy(model(held_out), 1.0)
        found.append((others.median() - digits.median()).item())
    return found


if __name__ == "__main__":
    mnist = load_data(resolve_data_dir(), torch.device("cpu"))
    for seed in map(int, sys.argv[1:]):
        without, with_ = gaps(mnist, seed, (0.0, recipe_file("nondigits").nondigit_weight))
        print(seed, round(without, 3), round(with_, 3), round(with_ / without, 2), round(with_ - without, 2))
