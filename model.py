"""The CNN: a few conv blocks that shrink 28x28 to 1x1, then a 1x1 conv to 10 logits.

Importing this module has no side effects; building a model prints nothing. Callers report
`describe(model)` (parameters and receptive field) when they build one.
"""

import torch
import torch.nn.functional as F
from torch import nn

from config import POOL, add_architecture_option, architecture, architecture_name
from data import MEAN, STD

NUM_CLASSES = 10
STEM_KERNEL = 4  # a strided stem never builds 28x28 feature maps, which a convolution and a pool did (docs/history.md)


class ContrastStretch(nn.Module):
    """Stretch each image's pixels to span the full range of MNIST's: darkest to 0, brightest to 1.

    MNIST's digits already do, so clean inputs pass unchanged; a grey background (a brighter scan, a
    fog) or faint ink no longer shifts every activation downstream. Works on normalised images.
    """

    def __init__(self):
        super().__init__()
        self.black, self.white = -MEAN / STD, (1 - MEAN) / STD  # MNIST's pixel range, normalised

    def forward(self, x):
        low = x.amin((1, 2, 3), keepdim=True)
        high = x.amax((1, 2, 3), keepdim=True)
        return self.black + (x - low) / (high - low).clamp(min=1e-6) * (self.white - self.black)


def conv_block(in_channels, out_channels, kernel=3, stride=1, padding=1, pool=False, norm=nn.BatchNorm2d):
    # Pooling before the norm and ReLU runs them on a quarter of the pixels: the same function
    # (max-pool commutes with ReLU), and faster on a CPU.
    layers = [nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return [*layers, norm(out_channels), nn.ReLU(inplace=True)]


class HeadBatchNorm(nn.BatchNorm2d):
    """BatchNorm for the 1x1 head, where a batch of one image gives a single value per channel.

    No batch statistics exist then, so such a batch is normalised with the running statistics, as in
    evaluation, while the scale and shift still train; any larger batch is a plain BatchNorm's.
    """

    def forward(self, x):
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class MNISTModel(nn.Module):
    """Input (N, 1, 28, 28) images normalised with data.MEAN and data.STD; output (N, 10) logits.

    arch: a preset name, STEM/BODY/HEAD or a {stem, body, head} mapping (config.architecture).
    softmax(logits / temperature) are the calibrated probabilities; training sets the temperature from its
    recipe, and the checkpoint keeps it (1.0, plain softmax, for a model never calibrated). energy_threshold,
    set for a model trained on non-digits, is where its "not sure" rule starts on energy (calibration.unsure).
    """

    def __init__(self, arch="default", contrast_stretch=True):
        super().__init__()
        self.spec = architecture(arch)
        self.arch = architecture_name(self.spec)
        self.contrast_stretch = contrast_stretch
        self.temperature = 1.0
        self.energy_threshold = None
        channels = self.spec["stem"]
        # Outside `features`, and without parameters: state dicts of models without it still load.
        self.stretch = ContrastStretch() if contrast_stretch else nn.Identity()
        layers = conv_block(1, channels, kernel=STEM_KERNEL, stride=2)
        body = self.spec["body"]
        for i, width in enumerate(body):
            if width != POOL:
                layers += conv_block(channels, width, pool=body[i + 1 : i + 2] == (POOL,))
                channels = width
        layers += conv_block(channels, self.spec["head"], padding=0, norm=HeadBatchNorm)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(self.spec["head"], NUM_CLASSES, 1)

    def forward(self, x):
        return self.classifier(self.features(self.stretch(x))).flatten(1)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def receptive_fields(layers):
    """Yield, layer by layer, the receptive field in input pixels of one output unit."""
    field, jump = 1, 1  # jump: input pixels between neighbouring units of the current layer
    for layer in layers:
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            kernel, stride, dilation = (_first(getattr(layer, a)) for a in ("kernel_size", "stride", "dilation"))
            field += (kernel - 1) * dilation * jump
            jump *= stride
        yield field


def receptive_field(model):
    *_, field = receptive_fields(model.modules())
    return field


def _first(value):
    return value[0] if isinstance(value, tuple) else value


def _layer_name(layer):
    if isinstance(layer, nn.Conv2d):
        k = _first(layer.kernel_size)
        stride = f", stride {_first(layer.stride)}" if _first(layer.stride) > 1 else ""
        return f"Conv2d {layer.in_channels}->{layer.out_channels} {k}x{k}{stride}, pad {_first(layer.padding)}"
    return type(layer).__name__


def describe(model):
    return (
        f"MNISTModel({model.arch!r}): {count_parameters(model):,} parameters, "
        f"receptive field {receptive_field(model)} px"
    )


def layer_table(model):
    """The model as a Markdown table: each layer's output size, parameters and receptive field."""
    layers = [model.stretch, *model.features, model.classifier]
    lines = ["| layer | output (C, H, W) | parameters | receptive field |", "| --- | --- | ---: | ---: |"]
    x = torch.zeros(1, 1, 28, 28)
    model.eval()
    with torch.no_grad():
        for layer, field in zip(layers, receptive_fields(layers), strict=True):
            x = layer(x)
            params = sum(p.numel() for p in layer.parameters())
            lines.append(f"| {_layer_name(layer)} | {tuple(x.shape[1:])} | {params:,} | {field} |")
    lines.append(f"| **total** | (10,) logits | **{count_parameters(model):,}** | **{receptive_field(model)}** |")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Print the model as a Markdown layer table.")
    add_architecture_option(parser)
    model = MNISTModel(parser.parse_args().arch)
    print(describe(model))
    print(layer_table(model))
