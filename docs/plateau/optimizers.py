"""Lookahead and Muon on the validation split, each seed running every lever in turn; one JSON row per run.

    python docs/plateau/optimizers.py 0,1,2,3,4 default,lookahead,muon@0.1,muon@0.24 > docs/plateau/optimizers.jsonl
    python docs/plateau/optimizers.py 0,1,2,3,4 default+views,lookahead+views > docs/plateau/optimizers-views.jsonl

lookahead is TrainConfig.lookahead at 0.95 (train.Lookahead); muon@LR replaces train.OneCycleSGD (below) to give
the hidden convolutions' filters Muon's step at peak learning rate LR; +views reads the model through views.py's
five views. The suite is the validation images' first 2,000, as in views.py.
"""

import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from views import ONE_READING, print_row, study_data

import train

MODEL = {}  # the model being trained, for the optimizer that needs more than its parameters


def zeropower(g, steps=5):
    """Muon's quintic Newton-Schulz iteration: roughly the semi-orthogonal matrix nearest g."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g / (g.norm() + 1e-7)
    transposed = x.size(0) > x.size(1)
    if transposed:
        x = x.T
    for _ in range(steps):
        m = x @ x.T
        x = a * x + (b * m + c * m @ m) @ x
    return x.T if transposed else x


class Muon(train.OneCycleSGD):
    """The recipe's SGD for every parameter but the filters of the convolutions that BatchNorm follows, which take
    Muon's step: Nesterov momentum, orthogonalised, on filters renormalised to sqrt(out channels), at a learning
    rate that follows the recipe's one-cycle shape from PEAK."""

    PEAK, MOMENTUM = 0.24, 0.6

    def __init__(self, parameters, config, total_steps, bn_biases=()):
        parameters = [p for p in parameters if p.requires_grad]
        filters = {id(m.weight) for m in MODEL["model"].features if isinstance(m, torch.nn.Conv2d)}
        self.filters = [p for p in parameters if id(p) in filters]
        super().__init__([p for p in parameters if id(p) not in filters], config, total_steps, bn_biases)
        self.filter_buffers = [torch.zeros_like(p) for p in self.filters]
        self.peak_lr = config.lr

    def zero_grad(self):
        super().zero_grad()
        for p in self.filters:
            p.grad = None

    @torch.no_grad()
    def step(self):
        lr = self.PEAK * self.lr / self.peak_lr
        for p, buffer in zip(self.filters, self.filter_buffers, strict=True):
            buffer.mul_(self.MOMENTUM).add_(p.grad)
            g = p.grad.add(buffer, alpha=self.MOMENTUM)
            update = zeropower(g.reshape(len(g), -1)).view(g.shape)
            p.mul_(len(p) ** 0.5 / p.norm())
            p.add_(update, alpha=-lr * max(1, g.size(0) / g[0].numel()) ** 0.5)
        super().step()


def train_remembering_the_model(model, *args, _train=train.train, **kwargs):
    MODEL["model"] = model
    return _train(model, *args, **kwargs)


def main(seeds, levers):
    train.train = train_remembering_the_model
    data, suite, suite_labels = study_data()
    plain = train.OneCycleSGD
    for seed in seeds:
        for lever in levers:
            views = lever.endswith("+views")
            name, _, peak = lever.removesuffix("+views").partition("@")
            Muon.PEAK = float(peak) if peak else Muon.PEAK
            train.OneCycleSGD = Muon if name == "muon" else plain
            config = replace(ONE_READING, seed=seed, lookahead=0.95 if name == "lookahead" else 0.0)
            print_row(lever, seed, config, data, suite, suite_labels, views)


if __name__ == "__main__":
    main([int(seed) for seed in sys.argv[1].split(",")], sys.argv[2].split(","))
