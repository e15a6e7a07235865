"""Export a trained model to ONNX or TorchScript: files that run without this project's code."""
import torch

from checkpoint import atomic_write

EXAMPLE_BATCH = torch.zeros(2, 1, 28, 28)


def _write_onnx(model, path):
    # The TorchScript-based exporter needs no packages beyond onnx; the batch axis stays dynamic.
    torch.onnx.export(model, (EXAMPLE_BATCH,), path, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)


def _write_torchscript(model, path):
    torch.jit.script(model).save(path)


WRITERS = {"onnx": _write_onnx, "torchscript": _write_torchscript}
DEFAULT_PATHS = {"onnx": "models/mnist_model.onnx", "torchscript": "models/mnist_model.torchscript.pt"}


def export(model, fmt, out):
    """Write model to out in the given format; any batch size runs through the exported file."""
    model = model.cpu().eval()
    atomic_write(out, lambda temporary: WRITERS[fmt](model, temporary))
