"""model.py: architectures, the receptive field, the contrast stretch, and the layer table it prints as a script."""

import pytest
import torch

from config import ARCHITECTURES, architecture
from data import normalize, pixels
from model import MNISTModel, count_parameters, receptive_field
from tests.helpers import assert_one_line_error, run_script


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


def test_model_script_prints_the_layer_table(capsys):
    assert run_script("model.py", "--arch", "compact") == 0
    out = capsys.readouterr().out
    assert f"**{count_parameters(MNISTModel('compact')):,}**" in out
    assert "| Conv2d 1->8 4x4, stride 2, pad 1 | (8, 14, 14) |" in out


def test_an_architecture_is_a_preset_or_its_widths_written_out():
    assert architecture("32/20,M,32,M/28") == ARCHITECTURES["default"]
    model = MNISTModel("12/12,M,20,20,M/16")
    assert model.arch == "12/12,M,20,20,M/16" and model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert MNISTModel("32/20,M,32,M/28").arch == "default"
    for wrong in ("huge", "16/16,M/24", "16/M,16,M/24", "16/16,M,M/24", "0/16,M,16,M/24", "16/16,M,x,M/24"):
        with pytest.raises(ValueError):
            architecture(wrong)


def test_a_wrong_architecture_option_is_a_usage_error(cli):
    assert_one_line_error(cli("--arch", "16/16,M/24", "--dry-run"), 2, "architecture '16/16,M/24': ", "exactly 2 'M'")
