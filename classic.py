"""The design this project started from, kept as the benchmark's baseline: a 10.6k-parameter net fed by a
DataLoader that applies PIL RandomRotation(7), ToTensor and Normalize image by image, batch 64, Adam at
1e-3, one epoch. Like the original, it runs as two scripts, one after the other:

    python classic.py train --data-dir DIR --model classic.pth
    python classic.py test --data-dir DIR --model classic.pth
"""

import argparse
import pickle
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import MNIST

from checkpoint import atomic_write, model_target, no_file_to_read
from cli import resolve_data_dir
from config import given_path, option_type
from data import MEAN, STD, missing_files, raw_folder
from errors import InputError, RunError
from numerics import synchronize

BATCH_SIZE, TEST_BATCH_SIZE, LR = 64, 1000, 1e-3


class ClassicNet(nn.Module):
    """The original 10.6k-parameter network, layer for layer."""

    temperature = 1.0  # never calibrated: its probabilities are the plain softmax

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 32, 2),
        )
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


def dataset(data_dir, train):
    missing = missing_files(data_dir, ["train" if train else "test"])
    if missing:  # the original never downloads
        raise InputError(f"MNIST not found: {', '.join(missing)} belong in {raw_folder(data_dir)}")
    steps = [transforms.RandomRotation(7)] if train else []
    transform = transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    return MNIST(str(data_dir), train=train, transform=transform)


def train(seed, device, data_dir, max_steps=None):
    """One epoch as the original trained it; returns the model, its training seconds and images seen."""
    torch.manual_seed(seed)
    model = ClassicNet().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loader = DataLoader(
        dataset(data_dir, train=True),
        batch_size=BATCH_SIZE,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    model.train()
    seen, start = 0, time.perf_counter()
    for step, (x, y) in enumerate(loader):
        if step == max_steps:
            break
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(x)
    synchronize(device)
    return model, time.perf_counter() - start, seen


def test(model, device, data_dir):
    """Test accuracy (%) as the original measured it, and the images per second of that pass."""
    test_set = dataset(data_dir, train=False)
    model.eval()
    correct, start = 0, time.perf_counter()
    with torch.no_grad():
        for x, y in DataLoader(test_set, batch_size=TEST_BATCH_SIZE):
            correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
    synchronize(device)
    return correct / len(test_set) * 100, len(test_set) / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description="The original design's train.py and test.py, as one script.")
    parser.add_argument("stage", choices=("train", "test"))
    parser.add_argument(
        "--data-dir", type=given_path("folder"), help="folder holding MNIST/raw (default: $MNIST_DATA_DIR, else ./data)"
    )
    parser.add_argument(
        "--model", type=given_path("file"), default="classic.pth", help="model file written by train, read by test"
    )
    parser.add_argument("--seed", type=option_type("seed"), default=0)
    parser.add_argument(
        "--max-steps", type=option_type("max_steps"), help="stop training after this many steps (a smoke run)"
    )
    args = parser.parse_args(argv)
    data_dir, device = resolve_data_dir(args.data_dir), torch.device("cpu")
    try:
        if args.stage == "train":
            model_target(args.model)  # before the training: a file there that is no model file is kept
            model, seconds, _ = train(args.seed, device, data_dir, args.max_steps)
            atomic_write(args.model, lambda temporary: torch.save(model.state_dict(), temporary))
            print(f"trained in {seconds:.1f} s")
        else:
            print(f"test accuracy {test(load(args.model), device, data_dir)[0]:.2f}%")
    except InputError as error:
        parser.exit(2, f"error: {error}\n")
    except (RunError, OSError) as error:  # a model path that cannot be written
        parser.exit(1, f"error: {error}\n")


def load(path):
    if not Path(path).is_file():
        raise InputError(no_file_to_read(path, "python classic.py train --model"))
    model = ClassicNet()
    try:
        model.load_state_dict(torch.load(path, weights_only=True))
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError):
        raise InputError(f"{path} is not a model file of classic.py (ClassicNet's weights)") from None
    return model


if __name__ == "__main__":
    main()
