"""Export a trained model as ONNX or as a torch.export program (pt2): files that run without this project.

Both are made on PyTorch's maintained paths (torch.export, and the ONNX exporter built on it), with a
dynamic batch dimension, and both carry the metadata a user needs to feed them. torch is imported
where it is used: `export --help` answers without loading it.
"""

import argparse
import hashlib
import json
import os
from pathlib import Path

from cli import EXPORT_FORMATS, add_model_option, add_views_option, output_file
from errors import InputError

OPSET = 18  # ONNX opset of the exported graph
EXAMPLE_BATCH = 2  # images in the example input the exporters trace
MAX_BATCH = 65_536  # the exported files take any batch from 1 to this
METADATA_FILE = "metadata.json"  # the pt2 archive's extra file holding the metadata


def add_arguments(parser):
    parser.add_argument(
        "--format",
        required=True,
        type=export_format,
        metavar="{onnx,pt2}",
        help="file format: onnx, or pt2 for torch.export.load",
    )
    add_model_option(parser)
    add_views_option(parser)
    parser.add_argument(
        "--out",
        type=output_file(),
        help="output path, ending in the format's suffix, .onnx or .pt2 (default: beside --model, such as "
        "models/mnist_model.onnx)",
    )


def export_format(name):
    if name == "torchscript":
        raise argparse.ArgumentTypeError(
            "torchscript is no longer written (PyTorch deprecated it): use --format pt2, "
            "a torch.export program that torch.export.load runs"
        )
    if name not in EXPORT_FORMATS:
        raise argparse.ArgumentTypeError(f"unknown format {name!r}; choose onnx or pt2")
    return name


def run(args):
    out = args.out or Path(args.model).with_suffix(f".{args.format}")  # beside its model: each model its own
    if os.path.exists(out) and os.path.exists(args.model) and os.path.samefile(out, args.model):
        raise InputError(f"--out {out} is the model file given to --model; refused to replace it with the export")
    suffix = Path(out).suffix
    if suffix in {f".{fmt}" for fmt in EXPORT_FORMATS} - {f".{args.format}"}:
        raise InputError(f"--out {out} is named for the other format; give --format {suffix[1:]} or an "
                         f"--out ending in .{args.format}")  # fmt: skip
    if suffix != f".{args.format}":  # a slip (metrics.json, the model's .pth) that would replace another file
        raise InputError(f"--out {out} does not end in .{args.format}; give an --out ending in .{args.format}")
    from checkpoint import load_model, output_target, writable_folder

    output_target(out)  # before the export's work: a device or read-only file there, a folder it cannot write into
    writable_folder(Path(out).parent)
    info = export(load_model(args.model, args.views), args.format, out, source=args.model)
    print(f"wrote {out}")
    print("\n".join(f"  {key}: {value}" for key, value in info.items()))


def metadata(model):
    """What a user needs to feed the exported file, as strings (ONNX metadata holds only strings)."""
    from data import MEAN, STD
    from model import NUM_CLASSES, count_parameters

    return {
        "input_layout": "(N, 1, 28, 28) float32: N images, 1 channel, 28x28 pixels, white digit on black",
        "normalization": f"(pixel / 255 - {MEAN}) / {STD}",
        "mean": str(MEAN),
        "std": str(STD),
        "classes": ",".join(str(digit) for digit in range(NUM_CLASSES)),
        "output": "logits (N, 10), one per class in the order of `classes` (for an image whose two highest logits "
        "lie less than view_margin apart, the mean of its and its four 1-pixel shifts' logits); softmax(logits / "
        "temperature) gives the calibrated probabilities; with an energy_threshold, an answer is not sure where "
        "-temperature * logsumexp(logits / temperature) is above it",
        "view_margin": str(model.view_margin),
        "temperature": str(model.temperature),
        **({"energy_threshold": str(model.energy_threshold)} if model.energy_threshold is not None else {}),
        "architecture": model.arch,
        "parameters": str(count_parameters(model)),
    }


def traced_program(model):
    """The model as a torch.export program with a dynamic batch dimension, as both formats start from."""
    import torch

    example = torch.zeros(EXAMPLE_BATCH, 1, 28, 28)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    return torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}})  # x: MNISTModel.forward's


def _write_onnx(model, path, info):
    import onnx  # only for this format: the check and the metadata
    import torch

    program = torch.onnx.export(
        traced_program(model),
        dynamo=True,
        input_names=["image"],
        output_names=["logits"],
        opset_version=OPSET,
        verbose=False,  # no progress lines: the command prints what it wrote
    )
    proto = program.model_proto
    for key, value in info.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, path)


def _write_pt2(model, path, info):
    import torch

    try:
        torch.export.save(traced_program(model), path, extra_files={METADATA_FILE: json.dumps(info)})
    except RuntimeError as error:  # its file writer's failure to open the file, in C++'s words
        if "open file failed" not in str(error):
            raise
        raise OSError(str(error).rpartition("strerror: ")[2].strip() or "cannot open the file") from None


WRITERS = {"onnx": _write_onnx, "pt2": _write_pt2}


def export(model, fmt, out, source=None):
    """Write model to out in the given format; any batch size runs through the exported file. Returns the metadata,
    which names the SHA-256 of the model file it came from (source), so that an export can be checked against it."""
    import torch

    from checkpoint import atomic_write

    # Weights in the default layout: torch.export's archive expects it (load_model gives the layout training reads).
    model = model.cpu().to(memory_format=torch.contiguous_format).eval()
    info = metadata(model)
    if source is not None:
        info["model_sha256"] = hashlib.sha256(Path(source).read_bytes()).hexdigest()
    atomic_write(out, lambda temporary: WRITERS[fmt](model, temporary, info))
    return info
