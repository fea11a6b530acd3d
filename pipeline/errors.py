"""The exceptions facestyle raises for problems a user can cause.

Every error a user can trigger (a missing file, a foreign checkpoint, a clip with no face) is a
subclass of :class:`FacestyleError`. The CLI catches that base class, prints ``str(err)`` as one
line and exits with ``err.exit_code``; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class FacestyleError(Exception):
    """Base class: a problem with the user's input or environment, reported in one line."""

    exit_code: int = 1


class CheckpointError(FacestyleError):
    """A checkpoint file is missing, unreadable, truncated, foreign or does not match the model."""

    exit_code = 3


class InputError(FacestyleError):
    """An input file is missing, empty, not a video/image, or its stream is corrupt."""

    exit_code = 4


class NoFaceError(FacestyleError):
    """No face was found where one is required."""

    exit_code = 5


class OutputError(FacestyleError):
    """The output cannot be written (exists, folder not writable, disk full)."""

    exit_code = 6


class ModelNotAvailableError(FacestyleError):
    """A named model is not cached and cannot be downloaded."""

    exit_code = 7


class UsageError(FacestyleError):
    """Options that cannot work together or on this machine (e.g. fp16 on a CPU)."""

    exit_code = 2
