"""Two initialisations the search never had, against PyTorch's default (Kaiming-uniform with a = sqrt(5): a standard
deviation of 1/sqrt(3 fan_in), where He's for ReLUs is sqrt(2 / fan)): "he" draws every convolution's weights from
He et al. (2015)'s normal for ReLUs, fan out, as torchvision's ResNets do; "zero-classifier" starts the 1x1
classifier at zero weights and biases, so the first steps move the features from a uniform answer. Each seed trains
each setting in turn with the default recipe (its views), on the training images less the 5,000 held out; one JSON
row per seed and setting, as widths.py's with "setting" for "width". The weights are drawn after the default's (the
generator moves on as for the default, then the setting draws or sets its own), for this study's runs only.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/inits.py 0,1,2,3,4 \
        default,he,zero-classifier --precision fp32
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from torch import nn
from views import print_rows_in_turn
from widths import patched_row

import train
from model import MNISTModel


def he(model):
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")


def zero_classifier(model):
    nn.init.zeros_(model.classifier.weight)
    nn.init.zeros_(model.classifier.bias)


INITS = {"default": lambda model: None, "he": he, "zero-classifier": zero_classifier}


def initialised(init):
    """MNISTModel, its weights then set by init."""

    class Initialised(MNISTModel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            init(self)

    return Initialised


if __name__ == "__main__":
    print_rows_in_turn(
        patched_row(train, "MNISTModel", {name: initialised(init) for name, init in INITS.items()}), sys.argv[1:]
    )
