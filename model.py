"""The CNN: a few conv blocks that shrink 28x28 to 1x1, then a 1x1 conv to 10 logits.

Importing this module has no side effects; building a model prints nothing. Callers report
`describe(model)` (parameters and receptive field) when they build one.
"""

import torch
import torch.nn.functional as F
from torch import nn

from config import POOL, SLANT_LIMIT, VIEW_MARGIN, add_architecture_option, architecture, architecture_name
from data import MEAN, STD

NUM_CLASSES = 10
STEM_KERNEL = 4  # a strided stem never builds 28x28 feature maps, which a convolution and a pool did (docs/history.md)
VIEW_SHIFTS = ((1, 0), (-1, 0), (0, 1), (0, -1))  # the views beside the image itself: 1-pixel shifts (dy, dx)


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


class Deskew(nn.Module):
    """Shear each image so that its ink's principal axis stands upright, turning about the ink's centre of mass, in
    one bilinear resampling (the border's pixels repeated into the space it opens).

    The slant is the ratio of the ink's second moments mu11 / mu02, the classic MNIST deskewing (LeCun et al.),
    clamped to +/- slant_limit so that a stroke lying flat is not sheared without bound. One writer's slant then reads
    as another's: on the test set the corruption suite gains 1.9 points, every corruption reads above the earlier
    recipe, thin strokes, low resolution and scale gain too, clean accuracy is unchanged (docs/plateau.md). The
    image is not moved to its centre of mass as well: that lifts translate, but lines across the digit and fog move
    the centre and cost 8 to 10 points on them. Works on normalised images; ink is what lies above each image's
    darkest pixel.
    """

    def __init__(self, slant_limit=SLANT_LIMIT, size=28):
        super().__init__()
        self.slant_limit = slant_limit
        # Pixel centres in grid_sample's -1..1 coordinates (align_corners=False), built once: each call building
        # them took a quarter of its time. Not persistent: state dicts stay as they were.
        centres = (torch.arange(size, dtype=torch.float32) * 2 + 1) / size - 1
        rows, cols = centres.view(size, 1).expand(size, size), centres.view(1, size).expand(size, size)
        # What the ink's pixels are weighed by: its mass, mean row and column, mean row^2 and row * column.
        moments = torch.stack([torch.ones_like(rows), rows, cols, rows * rows, rows * cols], -1).view(-1, 5)
        self.register_buffer("rows", rows.contiguous(), persistent=False)
        self.register_buffer("cols", cols.contiguous(), persistent=False)
        self.register_buffer("moments", moments, persistent=False)

    def forward(self, x):
        ink = x.flatten(1)  # no batch size written out: the exported files take any
        ink = ink - ink.amin(1, keepdim=True)
        mass, row_sum, col_sum, row2_sum, cross_sum = (ink @ self.moments).unbind(1)
        mass = mass.clamp(min=1e-6)
        row_centre, col_centre = row_sum / mass, col_sum / mass
        mu02 = (row2_sum / mass - row_centre**2).clamp(min=1e-6)
        mu11 = cross_sum / mass - row_centre * col_centre
        slant = (mu11 / mu02).clamp(-self.slant_limit, self.slant_limit).view(-1, 1, 1)
        # Output pixel (row r, column c) reads the input at row r, column c + slant * (r - row_centre).
        grid_cols = self.cols + slant * (self.rows - row_centre.view(-1, 1, 1))
        grid = torch.stack([grid_cols, self.rows.expand_as(grid_cols)], -1)  # (N, H, W, 2): x then y, as grid_sample
        return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def conv_block(in_channels, out_channels, kernel=3, stride=1, padding=1, pool=False, norm=nn.BatchNorm2d):
    # Pooling before the norm and ReLU runs them on a quarter of the pixels, faster on a CPU. Not the textbook
    # order's function (the norm's statistics are the pooled maxima's), but as many clean digits (docs/plateau.md).
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

    arch: a preset name, STEM/BODY/HEAD or a {stem, body, head} mapping (config.architecture). deskew: the
    slant limit of its deskewing (Deskew), 0 for none (config.TrainConfig.deskew sets it in training).
    view_margin: in evaluation, an image whose two highest logits lie less than this apart is read again through
    test-time views (`viewed`), 0 for never; training reads each image once.
    softmax(logits / temperature) are the calibrated probabilities; training sets the temperature from its
    recipe, and the checkpoint keeps it (1.0, plain softmax, for a model never calibrated). energy_threshold,
    set for a model trained on non-digits, is where its "not sure" rule starts on energy (calibration.unsure).
    """

    def __init__(self, arch="default", contrast_stretch=True, deskew=SLANT_LIMIT, view_margin=VIEW_MARGIN):
        super().__init__()
        self.spec = architecture(arch)
        self.arch = architecture_name(self.spec)
        self.contrast_stretch, self.deskew, self.view_margin = contrast_stretch, float(deskew), float(view_margin)
        self.temperature = 1.0
        self.energy_threshold = None
        channels = self.spec["stem"]
        # Outside `features`, and without parameters: state dicts of models without it still load.
        self.stretch = ContrastStretch() if contrast_stretch else nn.Identity()
        self.upright = Deskew(self.deskew) if self.deskew else nn.Identity()
        layers = conv_block(1, channels, kernel=STEM_KERNEL, stride=2)
        body = self.spec["body"]
        for i, width in enumerate(body):
            if width != POOL:
                layers += conv_block(channels, width, pool=body[i + 1 : i + 2] == (POOL,))
                channels = width
        layers += conv_block(channels, self.spec["head"], padding=0, norm=HeadBatchNorm)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(self.spec["head"], NUM_CLASSES, 1)

    def read(self, x):
        """The logits of one reading of each image."""
        x = self.upright(self.stretch(x))
        return self.classifier(self.features(x) if self.training else folded(self.features, x)).flatten(1)

    def forward(self, x):
        logits = self.read(x)
        if self.training or not self.view_margin:
            return logits
        unsure = logit_margin(logits) < self.view_margin
        if torch.compiler.is_exporting():  # an exported graph has no data-dependent batch: it views every image
            return torch.where(unsure[:, None], self.viewed(x, logits), logits)
        rows = unsure.nonzero().flatten()
        if not len(rows):
            return logits
        return logits.index_copy(0, rows, self.viewed(x[rows], logits[rows]))

    def viewed(self, x, logits):
        """The mean of the logits of x (given) and of its four 1-pixel shifts, the edge repeated into the space
        they leave. Read where the model is unsure, they give every seed 0.1 points on clean validation digits and
        the suite 0.5 (docs/plateau.md); where it is sure they change few answers, so they are not read there."""
        height, width = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
        shifts = [padded[..., 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] for dy, dx in VIEW_SHIFTS]
        shifted = self.read(torch.cat(shifts)).unflatten(0, (len(shifts), -1))
        return (logits + shifted.sum(0)) / (len(shifts) + 1)


def folded(layers, x):
    """x through the layers as evaluation reads them, where each convolution that a BatchNorm directly follows and
    the norm are read as one convolution (fold_batch_norm): the same logits to float32's rounding, in less time on a
    CPU (docs/model.md). Folded at each call (microseconds), so nothing goes stale when the weights change."""
    layers = list(layers)
    while layers:
        layer = layers.pop(0)
        if isinstance(layer, nn.Conv2d) and layers and isinstance(layers[0], nn.BatchNorm2d):
            weight, bias = fold_batch_norm(layer, layers.pop(0))
            x = F.conv2d(x, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)
        else:
            x = layer(x)
    return x


def fold_batch_norm(conv, norm):
    """The weight and bias of the one convolution that is conv, then norm with its running statistics: torch's
    fuse_conv_bn_weights' arithmetic, kept differentiable (that function returns new Parameters, which no gradient
    reaches the model's weights through)."""
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    bias = norm.bias - norm.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return conv.weight * scale.view(-1, 1, 1, 1), bias


def logit_margin(logits):
    """How far each row's highest logit lies above its second: what the views' rule reads (MNISTModel.view_margin)."""
    top_two = logits.topk(2, 1).values
    return top_two[:, 0] - top_two[:, 1]


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
    layers = [model.stretch, model.upright, *model.features, model.classifier]
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
