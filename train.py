"""One-epoch training: the whole training set on the device, augmented per batch, OneCycle SGD.

`train` is the loop; `load_data` and `train_and_evaluate` are what the pipeline, the benchmark and
tune share: a fresh model trained on one split and scored on another, clean.
"""

import math
import platform
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version

import torch
import torch.nn.functional as F
from tqdm import tqdm

from calibration import calibration_figures, fit_energy_threshold, fit_temperature
from config import ENERGY_FLAGGED
from data import augment, load_split, validation_split
from errors import RunError
from evaluation import metrics_from_logits, predict_logits
from model import MNISTModel, count_parameters, describe, receptive_field
from numerics import autocast_dtype, numerics, resolve_precision, synchronize
from outliers import POOL as OUTLIER_POOL
from outliers import draw as draw_outliers

# OneCycleLR's defaults: the schedule starts at lr / 25, ends 10,000 times lower still, and dips the momentum to 0.85.
START_DIVISOR, END_DIVISOR, BASE_MOMENTUM = 25.0, 1e4, 0.85
# The energy margin's bounds, -logsumexp(logits): digits pushed below the first, non-digits above the second. Chosen
# with the weight on validation digits and held-out non-digits, seeds 0-4 (docs/nondigits.md, study 7).
DIGIT_ENERGY, NONDIGIT_ENERGY = -6.0, -2.0


class TrainingDiverged(RunError):
    """The loss stopped being a finite number."""


class AccuracyBelowGate(RunError):
    """The trained model missed --min-accuracy."""


def train(model, images, labels, config, precision="auto"):
    """Train in place on images/labels (already on the model's device), the forward pass in precision (auto,
    bf16 or fp32; numerics.py); return the per-step history."""
    device = images.device
    dtype = autocast_dtype(resolve_precision(precision, device))
    generator = torch.Generator(device=device).manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(images) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    norms = (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    optimizer = OneCycleSGD(model.parameters(), config, total_steps, bn_biases=[norm.bias for norm in norms])
    augmentation = config.augmentation
    augmented_steps = round(total_steps * (1 - augmentation.clean_tail)) if augmentation else 0
    nondigits = round(config.batch_size * config.nondigits) if config.nondigit_weight else 0
    if nondigits:  # drawn at once: a batch's few cost more in calls than in pixels
        pool = draw_outliers(min(OUTLIER_POOL, nondigits * total_steps), generator, device)
    lookahead = Lookahead(model, config.lookahead, total_steps) if config.lookahead else None
    history, seen = [], 0
    model.train()
    with tqdm(total=total_steps, desc="train", unit="step", leave=False) as bar:
        for step in range(total_steps):
            if step % steps_per_epoch == 0:
                order = torch.randperm(len(images), device=device, generator=generator)
            batch = order[(step % steps_per_epoch) * config.batch_size :][: config.batch_size]
            x, y = images[batch], labels[batch]
            if nondigits:  # after the digits: train_step tells them apart by position
                x = torch.cat([x, pool[torch.randint(len(pool), (nondigits,), device=device, generator=generator)]])
            if augmentation and step < augmented_steps:
                x = augment(x, augmentation, generator)
            lr = optimizer.lr
            loss, accuracy = train_step(model, optimizer, x, y, config.label_smoothing, dtype, config.nondigit_weight)
            seen += len(batch)
            if lookahead:
                lookahead.step(step + 1)
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"training diverged: the loss became {loss} at step {step + 1}; try a lower --lr than {config.lr}"
                )
            history.append({"step": step + 1, "seen": seen, "loss": loss, "accuracy": accuracy, "lr": lr})
            bar.update()
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accuracy:.1f}%", refresh=False)  # drawn at tqdm's pace
            if (step + 1) % config.log_every == 0 or step + 1 == total_steps:
                recent = history[-config.log_every :]
                bar.write(
                    f"step {step + 1}/{total_steps}  loss {_mean(recent, 'loss'):.4f}  "
                    f"accuracy {_mean(recent, 'accuracy'):.2f}%  lr {lr:.4f}"
                )
    return history


class OneCycleSGD:
    """SGD with Nesterov momentum and weight decay, on a one-cycle schedule: torch.optim.SGD stepped by
    lr_scheduler.OneCycleLR (cosine annealing, momentum cycled against the learning rate), update for update.

    Written out because building any torch.optim optimizer imports torch._dynamo: seconds of start-up that a
    run does not otherwise need (calibration.fit_temperature avoids it too).
    The learning rate rises from lr / 25 to lr over the warmup fraction of the steps, then falls to
    lr / 25 / 10,000; meanwhile the momentum dips from `momentum` to BASE_MOMENTUM and comes back.
    """

    def __init__(self, parameters, config, total_steps, bn_biases=()):
        self.parameters = [p for p in parameters if p.requires_grad]
        # airbench's fast BatchNorm biases: their gradients scaled, so their steps (not their decay) grow.
        self.bn_biases = [p for p in bn_biases if p.requires_grad] if config.bn_bias_lr != 1 else []
        self.bn_bias_lr = config.bn_bias_lr
        self.momentum_buffers = None
        self.weight_decay = config.weight_decay
        self.total_steps, self.peak_step = total_steps, config.warmup * total_steps - 1
        start, end = config.lr / START_DIVISOR, config.lr / START_DIVISOR / END_DIVISOR
        lowest_momentum = min(BASE_MOMENTUM, config.momentum)
        self.phases = [
            (start, config.lr, config.momentum, lowest_momentum),
            (config.lr, end, lowest_momentum, config.momentum),
        ]
        self.steps_taken = 0
        self.lr, self.momentum = self.schedule(0)

    def schedule(self, step):
        """(learning rate, momentum) of a step, as OneCycleLR computes them."""
        if step <= self.peak_step:
            phase, fraction = self.phases[0], step / self.peak_step
        else:
            phase, fraction = self.phases[1], (step - self.peak_step) / (self.total_steps - 1 - self.peak_step)
        lr_from, lr_to, momentum_from, momentum_to = phase
        return _cosine(lr_from, lr_to, fraction), _cosine(momentum_from, momentum_to, fraction)

    def zero_grad(self):
        for p in self.parameters:
            p.grad = None

    @torch.no_grad()
    def step(self):
        if self.bn_biases:
            torch._foreach_mul_([p.grad for p in self.bn_biases], self.bn_bias_lr)
        grads = torch._foreach_add([p.grad for p in self.parameters], self.parameters, alpha=self.weight_decay)
        if self.momentum_buffers is None:
            self.momentum_buffers = [g.clone() for g in grads]
        else:
            torch._foreach_mul_(self.momentum_buffers, self.momentum)
            torch._foreach_add_(self.momentum_buffers, grads)
        # Nesterov: the step looks ahead along the momentum.
        torch._foreach_add_(grads, self.momentum_buffers, alpha=self.momentum)
        torch._foreach_add_(self.parameters, grads, alpha=-self.lr)
        self.steps_taken += 1
        self.lr, self.momentum = self.schedule(self.steps_taken)


LOOKAHEAD_EVERY = 5  # steps between syncs, airbench's


class Lookahead:
    """airbench's lookahead: every LOOKAHEAD_EVERY steps a slow copy of the model's floating-point state (weights
    and BatchNorm statistics) moves toward the trained state, keeping decay ** LOOKAHEAD_EVERY of itself times the
    cube of the progress, and training goes on from the slow copy. Early on it keeps almost nothing; the last step
    is not synced, so the model ends on its trained weights (what docs/plateau.md measured)."""

    def __init__(self, model, decay, total_steps):
        self.state = [value for value in model.state_dict().values() if value.is_floating_point()]
        self.slow = [value.detach().clone() for value in self.state]
        self.decay, self.total_steps = decay, total_steps

    @torch.no_grad()
    def step(self, steps_taken):
        if steps_taken % LOOKAHEAD_EVERY or steps_taken == self.total_steps:
            return
        keep = self.decay**LOOKAHEAD_EVERY * (steps_taken / self.total_steps) ** 3
        for slow, state in zip(self.slow, self.state, strict=True):
            slow.lerp_(state, 1 - keep)
            state.copy_(slow)


def _cosine(start, end, fraction):
    return end + (start - end) / 2.0 * (math.cos(math.pi * fraction) + 1)


def train_step(model, optimizer, x, y, label_smoothing=0.0, dtype=torch.float32, nondigit_weight=0.0):
    """One SGD step on a batch; returns its loss and accuracy (%) on the digits, before the step.

    x holds the digits labelled y, then any non-digit images. With them comes the energy-margin loss of Liu et al.
    (NeurIPS 2020), times nondigit_weight: squared hinges that push each digit's energy, -logsumexp(logits), below
    DIGIT_ENERGY and each non-digit's above NONDIGIT_ENERGY, so that the energy tells them apart. The forward pass
    runs under autocast in dtype; weights, their gradients and the loss stay float32."""
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
        logits = model(x.contiguous(memory_format=torch.channels_last)).float()
    digits, nondigits = logits[: len(y)], logits[len(y) :]
    loss = F.cross_entropy(digits, y, label_smoothing=label_smoothing)
    if len(nondigits):
        digit_energy, nondigit_energy = -digits.logsumexp(1), -nondigits.logsumexp(1)
        hinges = (
            F.relu(digit_energy - DIGIT_ENERGY).pow(2).mean() + F.relu(NONDIGIT_ENERGY - nondigit_energy).pow(2).mean()
        )
        loss = loss + nondigit_weight * hinges
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    accuracy = (digits.argmax(1) == y).float().mean() * 100
    return loss.item(), accuracy.item()


def _mean(rows, key):
    return sum(row[key] for row in rows) / len(rows)


def calibrate(model, config, data, logits):
    """Set the model's temperature, and for a model trained on non-digits its energy threshold: fitted on
    data["eval"] if it is the validation split (held out of training), else the recipe's (fitted so, by the same
    runs); return them and the clean calibration figures."""
    labels = data["eval"][1]
    validation = data["evaluated_on"] == "validation"
    model.temperature = fit_temperature(logits, labels) if validation else config.temperature
    # Only a model trained on non-digits has a threshold: a model trained on digits alone has its digits' energies
    # elsewhere, so a recipe's threshold would flag several times its share of them (docs/nondigits.md).
    model.energy_threshold = None
    if config.nondigit_weight > 0:
        model.energy_threshold = (
            round(fit_energy_threshold(logits, model.temperature, ENERGY_FLAGGED), 4)
            if validation
            else config.energy_threshold
        )
    return {
        "temperature": round(model.temperature, 4),
        "energy_threshold": model.energy_threshold,
        "temperature_fitted_on": "this run's validation split" if validation else "the recipe's validation runs",
        "calibration": calibration_figures(logits, labels, model.temperature),
    }


@dataclass
class TrainedRun:
    model: torch.nn.Module
    history: list  # one dict per step: step, seen, loss, accuracy, lr
    metrics: dict  # the clean figures and the run's settings (metrics.json holds them)
    logits: torch.Tensor  # (N, 10) for the evaluated images, before the temperature


def load_data(data_dir, device, validation=False):
    """{"train": (images, labels), "eval": (images, labels)} on the device, and "evaluated_on".

    "eval" is MNIST's test set, or with validation=True the VALIDATION_SIZE images held out of the
    training set (and "train" the rest): the test files are then never opened.
    """
    train_split = tuple(t.to(device) for t in load_split(data_dir, "train"))
    if validation:
        data = dict(zip(("train", "eval"), validation_split(*train_split), strict=True))
    else:
        data = {"train": train_split, "eval": tuple(t.to(device) for t in load_split(data_dir, "test"))}
    data["evaluated_on"] = "validation" if validation else "test"
    return data


def fresh_model(arch, config, device, contrast_stretch=True):
    """The model config trains, its weights drawn from config.seed, in the memory layout training uses."""
    torch.manual_seed(config.seed)
    model = MNISTModel(arch, contrast_stretch, config.deskew, config.view_margin)
    return model.to(device, memory_format=torch.channels_last)


def train_and_evaluate(arch, config, device, data, contrast_stretch=True, precision="auto"):
    """Train a fresh model on data["train"] in precision (auto, bf16 or fp32) and evaluate it on data["eval"]
    (clean images only, in float32). contrast_stretch: whether the model stretches its input (config.RECIPES)."""
    precision = resolve_precision(precision, device)
    model = fresh_model(arch, config, device, contrast_stretch)
    print(describe(model))

    synchronize(device)
    start = time.perf_counter()
    history = train(model, *data["train"], config, precision)
    synchronize(device)
    train_seconds = time.perf_counter() - start

    test_images, test_labels = data["eval"]
    start = time.perf_counter()
    logits = predict_logits(model, test_images)
    synchronize(device)
    test_seconds = time.perf_counter() - start
    metrics = metrics_from_logits(logits, test_labels)
    metrics.update(calibrate(model, config, data, logits))
    metrics.update(
        evaluated_on=data["evaluated_on"],
        train_images=len(data["train"][0]),
        architecture=model.arch,
        parameters=count_parameters(model),
        receptive_field=receptive_field(model),
        epochs=config.epochs,
        steps=len(history),
        batch_size=config.batch_size,
        learning_rate=config.lr,
        seed=config.seed,
        augmentation=asdict(config.augmentation) if config.augmentation else None,
        hyperparameters={k: v for k, v in asdict(config).items() if k != "augmentation"},
        train_seconds=round(train_seconds, 3),
        train_images_per_second=round(history[-1]["seen"] / train_seconds, 1),
        test_seconds=round(test_seconds, 3),
        test_images_per_second=round(len(test_images) / test_seconds, 1),
        numerics=numerics(device, precision),
        device=str(device),
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        torchvision_version=version("torchvision"),
        python_version=platform.python_version(),
    )
    return TrainedRun(model, history, metrics, logits)
