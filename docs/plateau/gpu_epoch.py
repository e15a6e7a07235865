"""One epoch of the default on a GPU: today's eager step against the step captured (issue "past the plateau": aim at
an epoch in at most 0.25 s). The whole dataset lies on the device, as `python main.py --device cuda` puts it.

For each seed, in turn: the default recipe's epoch in eager mode (train.train, as a run trains), then the same epoch
with the model's forward and backward compiled by torch.compile in mode "reduce-overhead", which on CUDA replays them
as CUDA graphs (the augmentation, the loss and the optimizer's foreach updates stay eager). Both are first warmed on
a short epoch that takes each batch shape a full one does (the last batch's included): the compile, and the device's
first calls, are timed apart. The model is compiled once; every seed's timed epoch loads that seed's fresh weights
into it. One JSON row per seed and mode: the
epoch's seconds (the device synchronised before and after) and the accuracy on the held-out validation images.
On a CPU the same compile runs without graphs, which checks the script, not the figure. MNIST is read as every
command reads it (MNIST_DATA_DIR, else ./data); the first line is the device, torch and the warm-up's seconds.

    python docs/plateau/gpu_epoch.py --device cuda --seeds 0 1 2 | grep '^{' > docs/plateau/gpu-epoch.jsonl
    python docs/plateau/gpu_epoch.py --device cpu --seeds 0 1 2 | grep '^{' > docs/plateau/gpu-epoch-cpu.jsonl
"""

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch

from cli import resolve_data_dir
from config import TrainConfig
from evaluation import predict_logits
from model import MNISTModel
from numerics import synchronize
from train import load_data, train


def fresh_model(seed, device):
    torch.manual_seed(seed)  # as train_and_evaluate seeds the weights
    return MNISTModel("default").to(device, memory_format=torch.channels_last)


def timed_epoch(model, data, config, precision):
    """Seconds of one epoch of train.train, the device's queue emptied before and after."""
    images, labels = data["train"]
    synchronize(images.device)
    start = time.perf_counter()
    train(model, images, labels, config, precision)
    synchronize(images.device)
    return time.perf_counter() - start


def validation_accuracy(model, data):
    images, labels = data["eval"]
    return round((predict_logits(model.eval(), images).argmax(1) == labels).float().mean().item() * 100, 2)


def warm(model, data, config, precision):
    """Seconds of a short epoch whose steps take each batch shape of a full one: two full batches, then the last,
    smaller one (a full one where the batch size divides the images)."""
    images, labels = data["train"]
    short = len(images) % config.batch_size + 2 * config.batch_size
    synchronize(images.device)
    start = time.perf_counter()
    train(model, images[:short], labels[:short], replace(config, max_steps=None), precision)
    synchronize(images.device)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="device (default: cuda)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    parser.add_argument("--precision", default="auto", help="train.train's precision (default: auto)")
    parser.add_argument("--steps", type=int, help="steps per epoch, fewer to check the script (default: all)")
    args = parser.parse_args()
    device = torch.device(args.device)
    data = load_data(resolve_data_dir(None), device, validation=True)
    config = replace(TrainConfig(), max_steps=args.steps, log_every=sys.maxsize)
    compiled_model = fresh_model(0, device)
    # dynamic=False: one graph per batch shape (the full batch, the last), each replayed as it is
    compiled = torch.compile(compiled_model, mode="reduce-overhead", dynamic=False)
    warm_s = {"eager": warm(fresh_model(0, device), data, config, args.precision),
              "reduce-overhead": warm(compiled, data, config, args.precision)}  # fmt: skip
    steps = args.steps or math.ceil(len(data["train"][0]) / config.batch_size)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    warm_s = {mode: round(seconds, 2) for mode, seconds in warm_s.items()}
    print(json.dumps({"device": name, "torch": torch.__version__, "warm_s": warm_s, "steps": steps}), flush=True)
    for seed in args.seeds:
        seeded = replace(config, seed=seed)
        eager = fresh_model(seed, device)
        seconds = timed_epoch(eager, data, seeded, args.precision)
        row = {"seed": seed, "mode": "eager", "epoch_s": round(seconds, 3), "acc": validation_accuracy(eager, data)}
        print(json.dumps(row), flush=True)
        compiled_model.load_state_dict(fresh_model(seed, device).state_dict())  # in place: the graphs' own tensors
        seconds = timed_epoch(compiled, data, seeded, args.precision)
        row = {"seed": seed, "mode": "reduce-overhead", "epoch_s": round(seconds, 3),
               "acc": validation_accuracy(compiled_model, data)}  # fmt: skip
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
