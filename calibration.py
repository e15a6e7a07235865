"""Calibrated confidence: temperature scaling and its measures.

Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", 2017) divides the logits by one
number fitted to minimise the negative log-likelihood on images the model did not train on: the argmax, and
so every prediction, stays as it was. The expected calibration error (ECE) is the gap between confidence and
accuracy, averaged over CALIBRATION_BINS equal-width confidence bins weighted by their share of images.

The "not sure" rule (`unsure`) flags an answer whose calibrated confidence is low, and for a model trained on
non-digits (train.train_step's energy margin) one whose energy score is high: an image unlike the digits it learnt.
"""

import math

import torch
import torch.nn.functional as F

CALIBRATION_BINS = 15  # equal-width bins of confidence, as Guo et al. measure it
# log T is searched in [-LOG_TEMPERATURE_BOUND, LOG_TEMPERATURE_BOUND]: temperatures from 0.007 to 150.
LOG_TEMPERATURE_BOUND = 5.0


def fit_temperature(logits, labels):
    """The temperature T minimising the NLL of softmax(logits / T) on these labels.

    The NLL is convex in 1 / T, so it has one minimum along log T, which a bounded scalar search finds. SciPy's,
    not a torch.optim optimizer: building one imports torch._dynamo, which costs a process seconds.
    """
    from scipy.optimize import minimize_scalar

    logits, labels = logits.detach().double().cpu(), labels.cpu()

    def nll(log_temperature):
        return F.cross_entropy(logits / math.exp(log_temperature), labels).item()

    bound = LOG_TEMPERATURE_BOUND
    return math.exp(minimize_scalar(nll, bounds=(-bound, bound), method="bounded", options={"xatol": 1e-6}).x)


def fit_energy_threshold(logits, temperature, flagged):
    """The energy above which `flagged` % of these images (digits held out of the training) lie."""
    return torch.quantile(energy(logits, temperature), 1 - flagged / 100).item()


def energy(logits, temperature):
    """The energy score of Liu et al. (NeurIPS 2020), -T logsumexp(logits / T), on the CPU: low for what the
    model learnt as digits, higher for what it did not."""
    return -temperature * torch.logsumexp(logits.float().cpu() / temperature, 1)


def unsure(logits, temperature, min_confidence, energy_threshold=None):
    """The "not sure" rule, per image: calibrated confidence below min_confidence %, or not_a_digit."""
    low = calibrated(logits, temperature).amax(1) * 100 < min_confidence
    return low | not_a_digit(logits, temperature, energy_threshold)


def not_a_digit(logits, temperature, energy_threshold=None):
    """Per image: the energy above the threshold of a model trained on non-digits, unlike the digits it learnt
    (none for a model without a threshold)."""
    if energy_threshold is None:
        return torch.zeros(len(logits), dtype=torch.bool)
    return energy(logits, temperature) > energy_threshold


def calibrated(logits, temperature):
    """softmax(logits / temperature), on the CPU: the probabilities this project shows and measures."""
    return (logits.float().cpu() / temperature).softmax(1)


def expected_calibration_error(probabilities, labels, bins=CALIBRATION_BINS):
    """ECE in %: sum over equal-width confidence bins of |accuracy - mean confidence| times the bin's share."""
    gaps = [
        images * abs(accuracy - confidence) for confidence, accuracy, images in reliability(probabilities, labels, bins)
    ]
    return sum(gaps) / len(labels) * 100


def reliability(probabilities, labels, bins=CALIBRATION_BINS):
    """Per equal-width bin of confidence that holds any images: (mean confidence, accuracy, images)."""
    confidence, predicted = probabilities.max(1)
    correct = (predicted == labels).float()
    which = (confidence * bins).long().clamp(max=bins - 1)  # confidence 1.0 falls in the top bin
    return [
        (confidence[which == b].mean().item(), correct[which == b].mean().item(), int((which == b).sum()))
        for b in range(bins)
        if (which == b).any()
    ]


def calibration_figures(logits, labels, temperature):
    """ECE (%) and NLL of softmax(logits) and of softmax(logits / temperature), on these images."""
    logits, labels = logits.float().cpu(), labels.cpu()
    figures = {"images": len(labels), "bins": CALIBRATION_BINS}
    for suffix, scale in (("_before", 1.0), ("", temperature)):
        figures["ece" + suffix] = round(expected_calibration_error(calibrated(logits, scale), labels), 3)
        figures["nll" + suffix] = round(F.cross_entropy(logits / scale, labels).item(), 4)
    return figures


def selective_figures(logits, labels, temperature, min_confidence, energy_threshold=None):
    """How the "not sure" rule (`unsure`) splits these answers, in %."""
    sure = ~unsure(logits, temperature, min_confidence, energy_threshold)
    correct = logits.float().cpu().argmax(1) == labels.cpu()
    return {
        "flagged": _percent(~sure),
        "flagged_of_right": _percent(~sure[correct]),
        "flagged_of_wrong": _percent(~sure[~correct]),
        "selective_accuracy": _percent(correct[sure]),
    }


def flagged_fraction(logits, temperature, min_confidence, energy_threshold=None):
    """% of these images the "not sure" rule (`unsure`) flags: for images with no right answer."""
    return _percent(unsure(logits, temperature, min_confidence, energy_threshold))


def _percent(mask):
    return mask.float().mean().item() * 100 if len(mask) else math.nan
