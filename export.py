"""Export a trained model as ONNX or as a torch.export program (pt2): files that run without this project.

Both are made on PyTorch's maintained paths (torch.export, and the ONNX exporter built on it), with a
dynamic batch dimension, and both carry the metadata a user needs to feed them.
"""

import json

import torch

from checkpoint import atomic_write
from data import MEAN, STD
from model import NUM_CLASSES, count_parameters

OPSET = 18  # ONNX opset of the exported graph
EXAMPLE_BATCH = torch.zeros(2, 1, 28, 28)
MAX_BATCH = 65_536  # the exported files take any batch from 1 to this
METADATA_FILE = "metadata.json"  # the pt2 archive's extra file holding the metadata
DEFAULT_PATHS = {"onnx": "models/mnist_model.onnx", "pt2": "models/mnist_model.pt2"}


def metadata(model):
    """What a user needs to feed the exported file, as strings (ONNX metadata holds only strings)."""
    return {
        "input_layout": "(N, 1, 28, 28) float32: N images, 1 channel, 28x28 pixels, white digit on black",
        "normalization": f"(pixel / 255 - {MEAN}) / {STD}",
        "mean": str(MEAN),
        "std": str(STD),
        "classes": ",".join(str(digit) for digit in range(NUM_CLASSES)),
        "output": "logits (N, 10), one per class in the order of `classes`; softmax gives probabilities",
        "architecture": model.arch,
        "parameters": str(count_parameters(model)),
    }


def dynamic_batch():
    # Made on demand: torch.export.Dim imports sympy, half a second that other commands need not pay.
    return {"x": {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}}  # keyed by MNISTModel.forward's argument


def _write_onnx(model, path, info):
    import onnx  # only for this format: the check and the metadata

    program = torch.onnx.export(
        model,
        (EXAMPLE_BATCH,),
        dynamo=True,
        input_names=["image"],
        output_names=["logits"],
        dynamic_shapes=dynamic_batch(),
        opset_version=OPSET,
        verbose=False,  # no progress lines: the command prints what it wrote
    )
    proto = program.model_proto
    for key, value in info.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, path)


def _write_pt2(model, path, info):
    program = torch.export.export(model, (EXAMPLE_BATCH,), dynamic_shapes=dynamic_batch())
    torch.export.save(program, path, extra_files={METADATA_FILE: json.dumps(info)})


WRITERS = {"onnx": _write_onnx, "pt2": _write_pt2}


def export(model, fmt, out):
    """Write model to out in the given format; any batch size runs through the exported file. Returns the metadata."""
    model = model.cpu().eval()
    info = metadata(model)
    atomic_write(out, lambda temporary: WRITERS[fmt](model, temporary, info))
    return info
