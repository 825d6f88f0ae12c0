"""Backend registry and selection: which implementation runs the TT-LoRA ops.

Backends
--------
``torch``  the efficient factor path in plain PyTorch (any device; always available).
``triton`` fused Triton kernels (CUDA tensors; CPU tensors only under ``TRITON_INTERPRET=1``).
``cuda``   the pybind11/CUDA C++ extension ``ttkernels._C`` (CUDA tensors, when built).

Each backend is a module that provides the *backend contract* on 2-D tensors::

    available() -> str | None
        None when usable in this process, else the reason (e.g. "triton is not installed").
    not_supported_reasons(x, A, B, bias) -> list[str]
        Why this backend cannot run these inputs (device, dtype, limits); never reads tensor values.
    linear_fwd(x, weight, bias, A, B, alpha) -> (y, z)
        x (T, n), weight (m, n), bias (m,) or None, A (R, n), B (m, R)
        z = x @ A.T                       (T, R) float32 (float64 when x is float64)
        y = x @ weight.T + bias + alpha * z @ B.T      (T, m) in x.dtype
    adapter_fwd(x, base_out, A, B, alpha) -> (y, z)
        base_out (T, m) is the output of an arbitrary frozen base layer; y = base_out + alpha * z @ B.T.
    linear_bwd(dy, x, z, weight, A, B, alpha, need_dx, need_dA, need_dB) -> (dx, dA, dB)
        dx = dy @ weight + alpha * (dy @ B) @ A      (T, n) in x.dtype; weight None -> adapter term only
        dA = alpha * (dy @ B).T @ x                   (R, n) in A.dtype
        dB = alpha * dy.T @ z                         (m, R) in B.dtype
        Entries not asked for are returned as None.

Selection (highest precedence first): the ``backend=`` argument of a layer or call; ``use_backend(...)`` /
``set_backend(...)``; the ``TTKERNELS_BACKEND`` environment variable; ``auto``. ``auto`` runs ``torch`` on CPU
tensors and tries ``triton`` -> ``cuda`` -> ``torch`` on CUDA tensors, logging once when it skips a faster one.
An explicit request that cannot run raises :class:`BackendUnavailableError` with every reason.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from .errors import BackendUnavailableError, SettingError
from .utils import logger, warn_once

BACKEND_NAMES = ("torch", "triton", "cuda")
_VALID_REQUESTS = ("auto", *BACKEND_NAMES)
_AUTO_ORDER = {"cuda": ("triton", "cuda", "torch"), "cpu": ("torch",)}


@dataclass(frozen=True)
class Backend:
    """One registered implementation of the backend contract (see module docstring)."""

    name: str
    module_path: str

    def load(self) -> tuple[ModuleType | None, str | None]:
        """Import the backend module; return (module, None) or (None, reason)."""
        return _load_module(self.module_path)


_REGISTRY: dict[str, Backend] = {
    "torch": Backend("torch", "ttkernels.ops.torch_backend"),
    "triton": Backend("triton", "ttkernels.ops.triton"),
    "cuda": Backend("cuda", "ttkernels.ops.cuda"),
}

_module_cache: dict[str, tuple[ModuleType | None, str | None]] = {}


def _load_module(path: str) -> tuple[ModuleType | None, str | None]:
    if path not in _module_cache:
        try:
            module = importlib.import_module(path)
        except Exception as exc:  # a broken optional backend must never break `import ttkernels`
            _module_cache[path] = (None, f"failed to import {path}: {type(exc).__name__}: {exc}")
        else:
            _module_cache[path] = (module, None)
    return _module_cache[path]


def validate_backend_name(name: str, *, what: str = "backend") -> str:
    """Return ``name`` normalised, or raise SettingError (a ValueError) listing the valid names."""
    normalised = str(name).strip().lower()
    if normalised not in _VALID_REQUESTS:
        raise SettingError(f"unknown {what} {name!r}; valid names are {', '.join(_VALID_REQUESTS)}")
    return normalised


def _env_backend() -> str:
    return validate_backend_name(os.environ.get("TTKERNELS_BACKEND", "auto") or "auto", what="TTKERNELS_BACKEND")


_ENV_BACKEND = _env_backend()  # validated once at import: a typo fails loudly, early
_override: str | None = None


def set_backend(name: str | None) -> None:
    """Set the process-wide default backend (``None`` or ``"auto"`` returns to the env/auto rule)."""
    global _override
    _override = None if name is None else validate_backend_name(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager: run TT-LoRA ops inside the block with backend ``name``."""
    global _override
    previous = _override
    _override = validate_backend_name(name)
    try:
        yield
    finally:
        _override = previous


def requested_backend(explicit: str | None = None) -> str:
    """The backend asked for by precedence: explicit argument > set/use_backend > TTKERNELS_BACKEND > auto."""
    if explicit is not None and explicit != "auto":
        return validate_backend_name(explicit)
    if _override is not None and _override != "auto":
        return _override
    return _ENV_BACKEND


def backend_status(name: str) -> str | None:
    """None when backend ``name`` can run in this process, else the reason it cannot."""
    module, reason = _REGISTRY[name].load()
    if module is None:
        return reason
    available = getattr(module, "available", None)
    if available is None:
        return f"{module.__name__} does not implement the backend contract"
    return available()


def _reasons(name: str, x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, bias: torch.Tensor | None) -> list[str]:
    unavailable = backend_status(name)
    if unavailable is not None:
        return [unavailable]
    module, _ = _REGISTRY[name].load()
    return list(module.not_supported_reasons(x, A, B, bias))


_chosen: dict[str, str] = {}
_select_cache: dict[tuple[Any, ...], str] = {}


def select(requested: str, x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, bias: torch.Tensor | None) -> ModuleType:
    """Pick the backend module for these inputs (the decision is cached by device/dtype/bias/rank/request)."""
    requested = requested_backend(requested)
    # Everything not_supported_reasons may read goes into the key (metadata only, never values).
    key = (
        requested, x.device, x.dtype, A.dtype, B.dtype, A.device, B.device,
        None if bias is None else (bias.dtype, bias.device), A.shape[0], os.environ.get("TRITON_INTERPRET"),
    )
    name = _select_cache.get(key)
    if name is None:
        name = _select_uncached(requested, x, A, B, bias)
        _select_cache[key] = name
        _chosen[f"{x.device.type}/{str(x.dtype).removeprefix('torch.')} (requested {requested})"] = name
        logger.debug("ttkernels: %s/%s requested=%s -> %s", x.device.type, x.dtype, requested, name)
    module, _ = _REGISTRY[name].load()
    assert module is not None  # selection only returns loadable backends
    return module


def _select_uncached(
    requested: str, x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, bias: torch.Tensor | None
) -> str:
    if requested != "auto":
        reasons = _reasons(requested, x, A, B, bias)
        if reasons:
            raise BackendUnavailableError(
                f"ttkernels backend {requested!r} was requested but cannot run on "
                f"{x.device.type}/{x.dtype}:\n" + "\n".join(f"  - {requested}: {r}" for r in reasons)
            )
        return requested
    order = _AUTO_ORDER.get(x.device.type, ("torch",))
    skipped: list[str] = []
    for name in order:
        reasons = _reasons(name, x, A, B, bias)
        if not reasons:
            if skipped:
                warn_once(
                    f"auto/{x.device.type}/{x.dtype}/{name}",
                    f"ttkernels: TT-LoRA ops on {x.device.type}/{x.dtype} use {name!r} ({'; '.join(skipped)})",
                )
            return name
        skipped.append(f"{name}: {'; '.join(reasons)}")
    raise BackendUnavailableError("no ttkernels backend can run these inputs:\n" + "\n".join(skipped))


def record_choice(key: str, value: str) -> None:
    """Record a layer-level decision (e.g. a dense-ΔW fallback) so that ``info()`` reports it."""
    _chosen[key] = value


def info() -> dict[str, Any]:
    """What is installed, what each backend can do and what has run so far (paste it into bug reports)."""
    from . import __version__

    try:
        import triton

        triton_version: str | None = triton.__version__
    except Exception:
        triton_version = None
    backends = {}
    for name in BACKEND_NAMES:
        reason = backend_status(name)
        backends[name] = {"available": reason is None, "reason": reason}
    return {
        "ttkernels": __version__,
        "torch": torch.__version__,
        "triton": triton_version,
        "cuda": torch.version.cuda,
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET"),
        "TTKERNELS_BACKEND": os.environ.get("TTKERNELS_BACKEND"),
        "requested": requested_backend(),
        "backends": backends,
        "chosen": dict(_chosen),
    }
