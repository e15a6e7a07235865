"""train.py: the optimizer and its schedule, and the precision a run trains in (numerics.py)."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from config import TrainConfig
from model import MNISTModel
from numerics import bf16_native, numerics, resolve_precision
from train import OneCycleSGD, train


@pytest.mark.parametrize(("warmup", "steps", "momentum"), [(0.109, 40, 0.95), (0.3, 7, 0.9), (0.5, 1, 0.8)])
def test_one_cycle_sgd_is_torch_sgd_on_one_cycle_lr_update_for_update(warmup, steps, momentum):
    config = TrainConfig(lr=0.2, momentum=momentum, weight_decay=4e-4, warmup=warmup)
    torch.manual_seed(0)
    ours, theirs = nn.Linear(5, 3), nn.Linear(5, 3)
    theirs.load_state_dict(ours.state_dict())
    optimizer = OneCycleSGD(ours.parameters(), config, steps)
    reference = torch.optim.SGD(
        theirs.parameters(), lr=config.lr, momentum=momentum, nesterov=True, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        reference,
        max_lr=config.lr,
        total_steps=steps,
        pct_start=warmup,
        base_momentum=min(0.85, momentum),
        max_momentum=momentum,
    )
    for batch in torch.randn(steps, 8, 5):
        assert optimizer.lr == schedule.get_last_lr()[0]
        for model, step in ((ours, optimizer), (theirs, reference)):
            step.zero_grad()
            model(batch).square().mean().backward()
            step.step()
        schedule.step()
        assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters(), strict=True))


def short_run(mnist, seed, precision):
    """Five steps: enough for rounding to part two runs (bfloat16 is emulated, slowly, where it is not native)."""
    torch.manual_seed(seed)
    model = MNISTModel()
    train(model, *mnist["train"], replace(TrainConfig(seed=seed), max_steps=5), precision)
    return model.state_dict()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_same_seed_precision_and_machine_give_bit_identical_weights(mnist, precision):
    first, second = short_run(mnist, 3, precision), short_run(mnist, 3, precision)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_precisions_train_other_weights_and_say_which_ran(mnist):
    in_fp32, in_bf16 = short_run(mnist, 3, "fp32"), short_run(mnist, 3, "bf16")
    assert not all(torch.equal(in_fp32[k], in_bf16[k]) for k in in_fp32)
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if bf16_native() else "fp32")
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"  # a GPU's runs were measured in float32
    record = numerics(torch.device("cpu"), "fp32")
    assert record["threads"] == torch.get_num_threads() >= 1 and record["cpu"]
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
