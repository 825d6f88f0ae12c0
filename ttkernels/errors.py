"""Exception types raised by ttkernels. Each message names the object, the expected and the actual value."""

from __future__ import annotations


class TTShapeError(ValueError):
    """A tensor-train shape or rank that does not fit the matrix it is meant for."""


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run (not installed, not built, or unsupported inputs)."""


class AdapterMismatchError(ValueError):
    """An adapter file that was saved for another model (other targets or other dimensions)."""
