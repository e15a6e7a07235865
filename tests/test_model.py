"""model.py: the receptive field, the contrast stretch, and the layer table it prints as a script."""

import pytest
import torch

from conftest import run_cli
from data import normalize, pixels
from model import MNISTModel, count_parameters, receptive_field


@pytest.mark.parametrize("arch", ["default", "compact"])
def test_receptive_field_covers_the_image(arch):
    assert receptive_field(MNISTModel(arch)) >= 28


def test_contrast_stretch_leaves_mnist_alone_and_undoes_a_grey_background(mnist):
    model = MNISTModel().eval()
    images = mnist["eval"][0][:256]
    brighter = normalize((pixels(images) * 0.5 + 0.5) * 255)  # the ink on a mid-grey background
    with torch.no_grad():
        stretched, restored = model.stretch(images), model.stretch(brighter)
    torch.testing.assert_close(stretched, images, atol=0.05, rtol=0)
    torch.testing.assert_close(restored, stretched, atol=0.05, rtol=0)


def test_model_script_prints_the_layer_table():
    result = run_cli("--arch", "compact", script="model.py")
    assert result.returncode == 0, result.stderr
    assert f"**{count_parameters(MNISTModel('compact')):,}**" in result.stdout
    assert "| Conv2d 1->8 4x4, stride 2, pad 1 | (8, 14, 14) |" in result.stdout
