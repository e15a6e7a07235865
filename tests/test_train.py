"""train.py: the optimizer and its schedule."""

import pytest
import torch
from torch import nn

from config import TrainConfig
from train import OneCycleSGD


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
