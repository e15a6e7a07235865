"""The original design's checks: parameter count, shapes, training, inference, accuracy, gradient flow,
device movement and batch invariance, on real MNIST. Everything else is in tests/, one file per module or
command; the fixtures (one real training run per session among them) are in conftest.py.
"""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from checkpoint import load_model
from config import TrainConfig
from evaluation import evaluate
from model import MNISTModel, count_parameters
from train import train, train_step


@pytest.mark.parametrize("arch, limit", [("default", 25_000), ("compact", 8_000)])
def test_parameter_count_under_limit(arch, limit):
    assert count_parameters(MNISTModel(arch)) < limit


@pytest.mark.parametrize("arch", ["default", "compact"])
def test_takes_28x28_input_and_gives_10_outputs(arch):
    model = MNISTModel(arch).eval()
    for n in (1, 7):
        assert model(torch.zeros(n, 1, 28, 28)).shape == (n, 10)


def test_training_step_changes_weights_and_lowers_loss(batch):
    torch.manual_seed(0)
    model = MNISTModel()
    x, y = batch
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    first_loss, _ = train_step(model, optimizer, x, y)
    for _ in range(4):
        loss, _ = train_step(model, optimizer, x, y)
    assert all(not torch.equal(before[name], p) for name, p in model.named_parameters())
    assert loss < first_loss


def test_inference_probabilities_sum_to_one(batch):
    model = MNISTModel().eval()
    with torch.no_grad():
        probabilities = F.softmax(model(batch[0]), dim=1)
    assert torch.allclose(probabilities.sum(1), torch.ones(len(probabilities)), atol=1e-6)
    assert (probabilities >= 0).all()


@pytest.mark.parametrize("size", [64, 1])
@pytest.mark.parametrize("arch", ["default", "compact"])
def test_every_parameter_gets_a_nonzero_gradient(batch, arch, size):
    """In training mode too with a single image: no BatchNorm may see one value per channel."""
    torch.manual_seed(0)
    model = MNISTModel(arch).train()
    F.cross_entropy(model(batch[0][:size]), batch[1][:size]).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")),
        pytest.param(
            "mps", marks=pytest.mark.skipif(not torch.backends.mps.is_available(), reason="no MPS device here")
        ),
    ],
)
def test_model_moves_between_devices(device, batch):
    model = MNISTModel().to(device).eval()
    with torch.no_grad():
        out = model(batch[0].to(device))
    assert out.device.type == device and out.shape == (64, 10)
    assert next(model.cpu().parameters()).device.type == "cpu"


def test_batch_invariance_in_eval_mode(trained, mnist):
    model = load_model(trained[0])
    images = mnist["eval"][0][:32]
    with torch.no_grad():
        alone = model(images[:1])
        in_16 = model(images[:16])[:1]
        in_32 = model(images)[:1]
    torch.testing.assert_close(in_16, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(in_32, alone, atol=1e-5, rtol=1e-5)


def test_one_real_epoch_reaches_98_5_percent(trained, mnist):
    path, metrics = trained
    assert metrics["accuracy"] >= 98.5  # the original spec's bar, with room; measured 99.20 to 99.40 (docs/floors.md)
    assert metrics["epochs"] == 1 and metrics["steps"] == -(-60_000 // TrainConfig().batch_size)
    # The file on disk holds the same model: evaluating it again gives the same accuracy.
    assert evaluate(load_model(path), *mnist["eval"])["accuracy"] == pytest.approx(metrics["accuracy"])


def test_saved_file_loads_with_weights_only_into_a_fresh_model(trained):
    state = torch.load(trained[0], weights_only=True)
    model = MNISTModel()
    model.load_state_dict(state)


def _short_run(mnist, seed):
    torch.manual_seed(seed)
    model = MNISTModel()
    images, labels = mnist["train"]
    train(model, images, labels, replace(TrainConfig(seed=seed), max_steps=15))
    return model.state_dict()


def test_same_seed_gives_identical_weights(mnist):
    first, second, other = _short_run(mnist, 3), _short_run(mnist, 3), _short_run(mnist, 4)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
