"""Channel attention, which the search never had: a squeeze-and-excitation block (Hu et al., CVPR 2018) after a
layer's ReLU scales each channel by sigmoid(W2 relu(W1 mean(x))), its hidden width a quarter of the channels. "se-7"
puts it after the first body convolution (20 channels at 7x7: 225 weights more), "se-3" after the second (32 channels
at 3x3: 552 more), "se-both" after both; the default model otherwise, its weights drawn first (the generator then
moves on for the block's, as inits.py's settings). Each seed trains each setting in turn with the default recipe (its
views), on the training images less the 5,000 held out; one JSON row per seed and setting, as inits.py's.

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python docs/plateau/attention.py 0,1,2,3,4 \
        default,se-7,se-3,se-both --precision fp32
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from inits import initialised
from torch import nn
from views import print_rows_in_turn
from widths import patched_row

import train

REDUCTION = 4  # hidden width: channels / REDUCTION


class SqueezeExcitation(nn.Module):
    def __init__(self, channels):
        super().__init__()
        hidden = max(channels // REDUCTION, 1)
        self.squeeze, self.excite = nn.Conv2d(channels, hidden, 1), nn.Conv2d(hidden, channels, 1)

    def forward(self, x):
        return x * self.excite(self.squeeze(x.mean((2, 3), keepdim=True)).relu()).sigmoid()


def excited(after):
    """What puts a SqueezeExcitation after the ReLU of each body convolution numbered in after (0: the first), for
    inits.initialised."""

    def change(model):
        convolutions = [i for i, layer in enumerate(model.features) if isinstance(layer, nn.Conv2d)][1:-1]
        layers = list(model.features)
        for number in sorted(after, reverse=True):
            at = convolutions[number]
            relu = next(i for i in range(at, len(layers)) if isinstance(layers[i], nn.ReLU))
            layers.insert(relu + 1, SqueezeExcitation(layers[at].out_channels))
        model.features = nn.Sequential(*layers)

    return change


SETTINGS = {
    name: initialised(excited(after))
    for name, after in {"default": (), "se-7": (0,), "se-3": (1,), "se-both": (0, 1)}.items()
}

if __name__ == "__main__":
    print_rows_in_turn(patched_row(train, "MNISTModel", SETTINGS), sys.argv[1:])
