"""The errors strabench raises on bad input.

The CLI turns every ``StrabenchError`` into one red line and exit code 2 (so it does any other
``OSError`` and click's usage errors); anything else is a bug and keeps its traceback. Raise
these where the problem is detected, with the offending value (and file, key, ...) in the
message, on one line.
"""

from __future__ import annotations


class StrabenchError(Exception):
    """Base class: a problem with the user's input, data, files or environment."""

    exit_code: int = 2


class UnknownModelError(StrabenchError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(StrabenchError):
    """A malformed or invalid suite / command-line configuration."""


class DataError(StrabenchError):
    """Missing, malformed or unreadable dataset files."""


class CheckpointError(StrabenchError):
    """A checkpoint that is missing, corrupt, unsafe or belongs to another run/model."""


class ShapeError(StrabenchError):
    """An input shape a model or block cannot take."""


class DeviceError(StrabenchError):
    """A requested device (e.g. cuda) that is not available."""


class ExportError(StrabenchError):
    """A model that cannot be exported (ONNX), or whose exported form disagrees with eager PyTorch."""


class NumericalError(StrabenchError):
    """Training diverged (NaN/inf loss)."""


class UserCodeError(StrabenchError):
    """A model or block given by reference (your code) raised while strabench called it
    (``strabench.usercode``): the message names the reference and the line that raised."""


class LockError(StrabenchError):
    """Another process holds the results directory."""


class WriteError(StrabenchError, OSError):
    """Writing a file or creating a directory failed (disk full, read-only mount, permissions).

    The message names the path and the OS reason. It is also an ``OSError`` carrying the
    original ``errno``/``strerror``/``filename``, so code that already handles OS errors (a
    checkpoint save that says which checkpoint is still good) keeps handling it.
    """

    def __str__(self) -> str:  # OSError would format errno/filename instead of the message
        return str(self.args[0]) if self.args else ""


def clip(text: str, limit: int = 300) -> str:
    """``text`` on one line, at most ``limit`` characters, cut at a word boundary and marked
    with " …" so a shortened message never ends mid-word as if it were complete."""
    line = " ".join(str(text).split())
    if len(line) <= limit:
        return line
    cut = line[: limit - 2]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + " …"
