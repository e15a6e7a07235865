"""Command line: `python main.py` trains, evaluates and saves; subcommands use a saved model.

Each command's module owns its options (`add_arguments(parser)`) and its work (`run(args)`); this file
only names them, and imports the chosen one alone, so `--help` and a quick command start fast.
"""

import argparse
import gc
import importlib
import signal
import sys

from cli import HelpFormatter, refuse_outputs_in_the_dataset
from errors import InputError, RunError

TRAIN = "train_pipeline"  # the module behind `python main.py [options]`
COMMANDS = {  # name -> (module, what it does)
    "predict": ("predict", "predict the digit in your own PNG, JPEG or BMP files"),
    "evaluate": ("evaluate", "accuracy, per-class accuracy and confusion matrix"),
    "robustness": ("robustness", "accuracy under each corruption; writes robustness.json and .png beside the model"),
    "export": ("export", "write the model as ONNX or a torch.export program (pt2)"),
    "bench": ("bench", "measure accuracy, speed, calibration and the server: bench MODE, accuracy by default"),
    "serve": ("serve", "a web page to draw digits on, and a JSON API (FastAPI, uvicorn)"),
    "tune": ("tune", "search the training recipe on Optuna, scored on data held out of the training set"),
}
DESCRIPTION = "Train a <25k-parameter CNN on MNIST for one epoch, evaluate it and save it."
EPILOG = "commands (python main.py COMMAND --help for each one's options):\n" + "\n".join(
    f"  {name:<11} {about}" for name, (_, about) in COMMANDS.items()
)


def build_parser(command, prog=None):
    """The parser of one command (None: training), with that command's module's options; prog: the name its usage
    line gives the command (default: main.py COMMAND)."""
    if command is None:
        parser = argparse.ArgumentParser(
            prog="main.py", description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter
        )
        module = TRAIN
    else:
        module, about = COMMANDS[command]
        prog = prog or f"main.py {command}"
        parser = argparse.ArgumentParser(prog=prog, description=about, formatter_class=HelpFormatter)
    module = importlib.import_module(module)
    module.add_arguments(parser)
    return parser, module


def main(argv=None, prog=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    # A command comes first; anything else is training's options, so `--epochs 3 predict` is refused.
    command = argv[0] if argv and argv[0] in COMMANDS else None
    parser, module = build_parser(command, prog)
    rest = argv[1:] if command else argv
    # A command with modes (bench) names its default mode where the arguments name none.
    args = parser.parse_args(module.command_line(rest) if hasattr(module, "command_line") else rest)
    try:
        refuse_outputs_in_the_dataset(args)
        return module.run(args)
    except InputError as error:
        parser.exit(2, f"error: {error}\n")
    except (RunError, OSError) as error:  # OSError: an output that cannot be written (a folder in the way, a full disk)
        parser.exit(1, f"error: {error}\n")
    except KeyboardInterrupt as interrupt:  # Outputs.commit says so where the outputs had landed
        parser.exit(130, f"{str(interrupt) or 'interrupted: nothing was saved'}\n")


if __name__ == "__main__":
    code = main()
    # The command is done and said what landed: a Ctrl-C now has nothing to stop, only a traceback to print.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # What is left is freed by the exit: the collector need not walk it first (half a second with torch loaded).
    gc.freeze()
    sys.exit(code)
