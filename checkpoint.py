"""Saving run outputs atomically, and loading state dicts safely (weights_only=True, checked shapes)."""

import json
import os
from pathlib import Path

import torch

from cli import InputError
from config import ARCHITECTURES
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


def save_model(model, path):
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
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
    """The MNISTModel whose architecture matches the state dict at path, with its weights, in eval mode."""
    state = load_state_dict(path)
    shapes = {name: tuple(tensor.shape) for name, tensor in state.items()}
    for arch in ARCHITECTURES:
        model = MNISTModel(arch)
        if shapes == {name: tuple(t.shape) for name, t in model.state_dict().items()}:
            model.load_state_dict(state)
            return model.eval()
    raise CheckpointError(
        f"{path} is from a different architecture: its layers match none of {', '.join(ARCHITECTURES)}"
    )
