"""Exception types raised by ttkernels. Each message names the object, the expected and the actual value."""

from __future__ import annotations


class SettingError(ValueError):
    """A setting outside what it may be (a learning rate <= 0, a split size of 0, an unknown method or model).
    The recipes raise it before any model or data loads (patch targets that match nothing: once the model has
    loaded); the command-line tools print it as a usage error."""


class TTShapeError(ValueError):
    """A tensor-train shape or rank that does not fit the matrix it is meant for."""


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run (not installed, not built, or unsupported inputs)."""


class AdapterMismatchError(ValueError):
    """An adapter file that was saved for another model (other targets or other dimensions)."""
