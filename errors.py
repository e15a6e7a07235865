"""The project's own errors: the library raises them, and the commands turn them into exit codes (main.py)."""


class InputError(Exception):
    """Bad input (a file, a folder, a setting): main.py prints the message in one line and exits 2."""


class RunError(Exception):
    """The run failed (diverged, missed its accuracy gate): main.py prints the message in one line and exits 1."""
