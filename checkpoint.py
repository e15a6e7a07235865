"""Saving run outputs atomically, and loading state dicts safely (weights_only=True, checked shapes).

A model file is a plain state dict: `MNISTModel(arch).load_state_dict(torch.load(path, weights_only=True))`
loads it. What rebuilds the model rides along in the state dict's own `_metadata` (PyTorch's per-module
record, which torch.save keeps and load_state_dict passes by): the architecture, the contrast stretch
and the temperature. Files saved before they did are matched against the presets (temperature 1).
"""

import json
import math
import os
from collections import OrderedDict
from pathlib import Path

import torch

from cli import InputError
from config import ARCHITECTURES, FORMER_ARCHITECTURES, architecture
from model import MNISTModel


class CheckpointError(InputError):
    """A model file is missing, damaged, unsafe, or not one of this project's architectures."""


def atomic_write(path, write):
    """Call write(temporary_path), then move the finished file onto path in one step.

    A run killed at any moment leaves either the old file or the new one, never a part of either.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One per process, so concurrent runs never share one; the suffix is kept for writers that check it (pt2).
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(temporary)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_text(path, text):
    atomic_write(path, lambda temporary: Path(temporary).write_text(text))


def write_json(path, value):
    write_text(path, json.dumps(value, indent=2) + "\n")


METADATA_KEY = "mnist_cnn"  # this project's entry in the root module's _metadata


def save_model(model, path):
    source = model.state_dict()
    state = OrderedDict((name, tensor.detach().cpu()) for name, tensor in source.items())
    state._metadata = source._metadata
    state._metadata[""][METADATA_KEY] = {
        "architecture": {**model.spec, "body": list(model.spec["body"])},
        "contrast_stretch": model.contrast_stretch,
        "temperature": float(model.temperature),
    }
    atomic_write(path, lambda temporary: torch.save(state, temporary))


def load_state_dict(path):
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no model file at {path}; train one with: python main.py --out {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  torch.load raises whatever its unpickler or zip reader meets
        if "weights only load failed" in str(error).lower():
            raise CheckpointError(
                f"{path} holds pickled code or objects, not only tensors; refused to load it"
            ) from None
        raise CheckpointError(f"{path} is corrupt or truncated ({type(error).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors")
    if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise CheckpointError(f"{path} holds NaN or infinite weights; refused to load it")
    return state


def load_model(path):
    """The MNISTModel the file at path describes (or, for an older file, the preset its layers match), with its
    weights and temperature, in eval mode."""
    state = load_state_dict(path)
    described = getattr(state, "_metadata", {}).get("", {}).get(METADATA_KEY)
    model = described_model(path, described) if described else preset_model(path, state)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise CheckpointError(f"{path}: its weights do not fit the architecture it describes, {model.arch}") from None
    return model.eval()


def described_model(path, described):
    try:
        spec = architecture(described["architecture"])
        stretch, temperature = described["contrast_stretch"], described["temperature"]
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} describes its model wrongly: {error}") from None
    if not isinstance(stretch, bool) or not isinstance(temperature, float) or not 0 < temperature < math.inf:
        raise CheckpointError(
            f"{path} describes its model wrongly: contrast_stretch {stretch!r}, temperature {temperature!r}"
        )
    model = MNISTModel(spec, stretch)
    model.temperature = temperature
    return model


def preset_model(path, state):
    shapes = {name: tuple(tensor.shape) for name, tensor in state.items()}
    for arch in (*ARCHITECTURES, *FORMER_ARCHITECTURES.values()):
        model = MNISTModel(arch)
        if shapes == {name: tuple(t.shape) for name, t in model.state_dict().items()}:
            return model
    raise CheckpointError(
        f"{path} is from a different architecture: its layers match none of {', '.join(ARCHITECTURES)}"
    )
