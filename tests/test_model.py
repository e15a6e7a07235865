"""model.py: architectures, the receptive field, the contrast stretch, the deskewing, the test-time views, the
BatchNorms folded in evaluation, and the layer table it prints as a script."""

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_weights

from config import ARCHITECTURES, SLANT_LIMIT, architecture
from data import normalize, pixels
from model import Deskew, MNISTModel, count_parameters, fold_batch_norm, logit_margin, receptive_field
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


def scipy_deskew(image, slant_limit):
    """The oracle: the ink's moments in float64 with numpy, the shear by scipy.ndimage.affine_transform (bilinear,
    the edge repeated)."""
    import numpy as np
    from scipy import ndimage

    image = image.double().numpy()
    ink = image - image.min()
    rows, cols = np.indices(image.shape)
    mass = ink.sum()
    row_centre, col_centre = (ink * rows).sum() / mass, (ink * cols).sum() / mass
    mu02 = (ink * (rows - row_centre) ** 2).sum() / mass
    mu11 = (ink * (rows - row_centre) * (cols - col_centre)).sum() / mass
    slant = np.clip(mu11 / mu02, -slant_limit, slant_limit)
    # The output pixel (r, c) reads the input at (r, c + slant * (r - row_centre)).
    matrix, offset = np.array([[1.0, 0.0], [slant, 1.0]]), np.array([0.0, -slant * row_centre])
    return torch.from_numpy(ndimage.affine_transform(image, matrix, offset, order=1, mode="nearest")).float()


@pytest.mark.parametrize("slant_limit", [SLANT_LIMIT, 0.1])  # 0.1 holds back most digits' slants
def test_deskew_shears_as_scipy_does_from_moments_numpy_computes(mnist, slant_limit):
    images = MNISTModel().stretch(mnist["eval"][0][:64])
    slanted = images.clone()
    upright = [scipy_deskew(image[0], slant_limit) for image in images[:8]]
    slanted[:8] = torch.stack(upright).unsqueeze(1)  # some upright already
    with torch.no_grad():
        deskewed = Deskew(slant_limit)(slanted)
    expected = torch.stack([scipy_deskew(image[0], slant_limit) for image in slanted]).unsqueeze(1)
    torch.testing.assert_close(deskewed, expected, atol=1e-4, rtol=0)
    assert (deskewed - slanted).abs().amax() > 1  # it moved ink


def test_deskew_stands_slanted_ink_upright_and_leaves_upright_ink_and_blank_images_alone():
    bar = torch.full((1, 1, 28, 28), -1.0)
    bar[..., 4:24, 13:15] = 2.0  # an upright stroke
    slanted = torch.full_like(bar, -1.0)
    for row in range(4, 24):
        shift = (row - 14) // 3  # leaning about 18 degrees
        slanted[..., row, 13 - shift : 15 - shift] = 2.0
    blank = torch.zeros(1, 1, 28, 28)
    with torch.no_grad():
        out = Deskew()(torch.cat([bar, slanted, blank]))
    torch.testing.assert_close(out[0], bar[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[2], blank[0])
    ink_columns = (out[1, 0, 6:22] > 0.5).float().argmax(1)  # each row's first inked column, away from the ends
    assert ink_columns.max() - ink_columns.min() <= 1  # upright, give or take the resampling


def test_a_model_that_deskews_keeps_the_state_dict_of_one_that_does_not_and_a_limit_of_0_is_none():
    assert MNISTModel().state_dict().keys() == MNISTModel(deskew=0).state_dict().keys()
    assert isinstance(MNISTModel(deskew=0).upright, torch.nn.Identity)
    assert MNISTModel(deskew=0.3).upright.slant_limit == 0.3


def views_oracle(model, images):
    """The mean of the model's single readings of the images and of their four 1-pixel shifts, each shift made by
    torch.roll over an edge-padded copy (as docs/plateau/views.py measured them)."""
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    shifts = [torch.roll(padded, shift, (2, 3))[..., 1:-1, 1:-1] for shift in ((1, 0), (-1, 0), (0, 1), (0, -1))]
    return torch.stack([model.read(view) for view in (images, *shifts)]).mean(0)


def test_the_model_reads_again_through_the_views_only_the_images_it_is_unsure_of(mnist):
    model = MNISTModel().eval()
    images = mnist["eval"][0][:200]
    with torch.no_grad():
        once, viewed = model.read(images), views_oracle(model, images)
        margin = logit_margin(once)
        model.view_margin = margin.sort().values[99:101].mean().item()  # half the images below it, none on the line
        unsure = margin < model.view_margin
        logits = model(images)
        torch.testing.assert_close(logits[unsure], viewed[unsure], atol=1e-5, rtol=0)
        assert torch.equal(logits[~unsure], once[~unsure])
        assert (viewed - once)[unsure].abs().amax() > 1e-3  # the views changed what they read
        for margin_none_is_below in (margin.min().item(), 0.0):  # no image unsure; views off
            model.view_margin = margin_none_is_below
            assert torch.equal(model(images), once)
        model.train().view_margin = 1e3  # training reads each image once, whatever the margin
        assert torch.equal(model(images), model.read(images))


def model_with_trained_looking_norms(arch):
    """A model in evaluation whose BatchNorms' running statistics, scales and shifts lie far from a fresh norm's."""
    model = MNISTModel(arch, view_margin=0)
    torch.manual_seed(0)
    with torch.no_grad():
        for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            norm.running_mean.normal_(0, 0.5)
            norm.running_var.uniform_(0.2, 3)
            norm.weight.uniform_(0.5, 2)
            norm.bias.normal_(0, 0.5)
    return model.eval()


def layer_by_layer(model, images):
    return model.classifier(model.features(model.upright(model.stretch(images)))).flatten(1)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_evaluation_reads_a_convolution_and_its_batchnorm_as_one_and_gets_the_layers_own_logits(mnist, arch):
    model = model_with_trained_looking_norms(arch)
    layers = list(model.features)
    norms = [i for i, layer in enumerate(layers) if isinstance(layer, torch.nn.BatchNorm2d)]
    after_a_convolution = [i for i in norms if isinstance(layers[i - 1], torch.nn.Conv2d)]
    read = []
    for i in norms:
        layers[i].register_forward_hook(lambda *_, i=i: read.append(i))
    images = mnist["eval"][0][:100]
    logits = model(images)
    assert after_a_convolution and read == [i for i in norms if i not in after_a_convolution]  # folded, not read
    layers_own = layer_by_layer(model, images)
    torch.testing.assert_close(logits, layers_own, atol=1e-4, rtol=1e-5)
    # The gradients too: the fold is torch's arithmetic, differentiable.
    gradients = [torch.autograd.grad(out.square().sum(), list(model.parameters())) for out in (logits, layers_own)]
    for folded_gradient, layers_gradient in zip(*gradients, strict=True):
        torch.testing.assert_close(folded_gradient, layers_gradient, atol=1e-3, rtol=1e-4)


def test_the_fold_is_torchs_fuse_conv_bn_weights():
    model = model_with_trained_looking_norms("default")
    conv, norm = model.features[0], model.features[1]
    conv.bias = torch.nn.Parameter(torch.randn(conv.out_channels))  # the fold's bias term too
    expected = fuse_conv_bn_weights(
        conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias
    )
    for mine, torchs in zip(fold_batch_norm(conv, norm), expected, strict=True):
        torch.testing.assert_close(mine, torchs, atol=1e-6, rtol=1e-6)


def test_model_script_prints_the_layer_table(capsys):
    assert run_script("model.py", "--arch", "compact") == 0
    out = capsys.readouterr().out
    assert f"**{count_parameters(MNISTModel('compact')):,}**" in out
    assert "| Conv2d 1->8 4x4, stride 2, pad 1 | (8, 14, 14) |" in out


def test_an_architecture_is_a_preset_or_its_widths_written_out():
    assert architecture("16/16,M,48,M/32") == ARCHITECTURES["default"]
    model = MNISTModel("12/12,M,20,20,M/16")
    assert model.arch == "12/12,M,20,20,M/16" and model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert MNISTModel("16/16,M,48,M/32").arch == "default"
    for wrong in ("huge", "16/16,M/24", "16/M,16,M/24", "16/16,M,M/24", "0/16,M,16,M/24", "16/16,M,x,M/24"):
        with pytest.raises(ValueError):
            architecture(wrong)


def test_a_wrong_architecture_option_is_a_usage_error(cli):
    assert_one_line_error(cli("--arch", "16/16,M/24", "--dry-run"), 2, "architecture '16/16,M/24': ", "exactly 2 'M'")
