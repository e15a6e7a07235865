"""train.py: the optimizer and its schedule, and the precision a run trains in (numerics.py)."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from config import TrainConfig
from model import MNISTModel
from numerics import bf16_native, describe_numerics, numerics, resolve_precision
from train import LOOKAHEAD_EVERY, Lookahead, OneCycleSGD, train


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


def test_batchnorm_biases_step_as_torch_sgd_steps_with_their_gradients_scaled_by_bn_bias_lr():
    """airbench's fast BatchNorm biases: K times the gradient, the weight decay as every other parameter's."""
    config = TrainConfig(lr=0.2, momentum=0.9, weight_decay=4e-4, warmup=0.3, bn_bias_lr=8.0)
    torch.manual_seed(0)
    ours, theirs = (nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 3)) for _ in range(2))
    theirs.load_state_dict(ours.state_dict())
    optimizer = OneCycleSGD(ours.parameters(), config, 6, bn_biases=[ours[1].bias])
    reference = torch.optim.SGD(theirs.parameters(), lr=0.2, momentum=0.9, nesterov=True, weight_decay=4e-4)
    for batch in torch.randn(6, 8, 5):
        for group in reference.param_groups:
            group["lr"], group["momentum"] = optimizer.lr, optimizer.momentum
        for model, step in ((ours, optimizer), (theirs, reference)):
            step.zero_grad()
            model(batch).square().mean().backward()
        theirs[1].bias.grad *= 8
        optimizer.step(), reference.step()
        assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters(), strict=True))


def short_run(mnist, seed, precision):
    """Two steps: enough for rounding to part two runs (bfloat16 is emulated, at 0.3 s a step on one AVX2 core,
    where it is not native)."""
    torch.manual_seed(seed)
    model = MNISTModel()
    train(model, *mnist["train"], replace(TrainConfig(seed=seed), max_steps=2), precision)
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


@pytest.mark.parametrize(("threads", "said"), [(1, "), 1 thread"), (2, "), 2 threads")])
def test_the_logs_numerics_line_counts_threads_in_words(threads, said):
    record = {**numerics(torch.device("cpu"), "fp32"), "threads": threads}
    assert describe_numerics(record).endswith(said)


def test_lookahead_restarts_training_from_its_slow_copy_every_five_steps():
    model = nn.BatchNorm1d(3)  # weights and running statistics: the whole floating-point state
    start = {name: value.clone() for name, value in model.state_dict().items()}
    lookahead = Lookahead(model, decay=0.95, total_steps=20)
    with torch.no_grad():  # what training would have moved
        for value in model.state_dict().values():
            value.add_(1)
    lookahead.step(4)  # between syncs: untouched
    assert all(torch.equal(value, start[name] + 1) for name, value in model.state_dict().items())
    lookahead.step(10)
    keep = 0.95**LOOKAHEAD_EVERY * (10 / 20) ** 3
    for name, value in model.state_dict().items():
        expected = start[name] + (1 if name == "num_batches_tracked" else 1 - keep)  # an integer is not averaged
        torch.testing.assert_close(value, expected.to(value.dtype))
    before_last = {name: value.clone() for name, value in model.state_dict().items()}
    lookahead.step(20)  # the last step keeps the trained state
    assert all(torch.equal(value, before_last[name]) for name, value in model.state_dict().items())


def test_a_run_with_lookahead_trains_other_weights_of_the_same_kind(mnist):
    runs = {}
    for lookahead in (0.0, 0.95):
        torch.manual_seed(3)
        model = MNISTModel()
        train(model, *mnist["train"], TrainConfig(seed=3, lookahead=lookahead, max_steps=12), "fp32")  # syncs at 5, 10
        runs[lookahead] = model.state_dict()
    assert all(torch.isfinite(value).all() for value in runs[0.95].values())
    assert not all(torch.equal(runs[0.0][k], runs[0.95][k]) for k in runs[0.0])
