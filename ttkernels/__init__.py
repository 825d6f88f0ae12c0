"""ttkernels: TT-LoRA (tensor-train low-rank adaptation) for PyTorch, with fused Triton/CUDA kernels.

    import ttkernels
    model = ttkernels.patch(model, targets=["q_proj", "v_proj"], rank=5, alpha=8.0)
    print(ttkernels.trainable_parameters(model))
    ttkernels.save_adapter(model, "out/")
"""

from __future__ import annotations

__version__ = "0.1.0"

from .backends import info, set_backend, use_backend
from .config import DEFAULT_TARGETS, TTConfig
from .decompose import tt_relative_error, tt_svd
from .errors import AdapterMismatchError, BackendUnavailableError, SettingError, TTShapeError
from .layer import TTLinear
from .ops import tt_adapter, tt_linear
from .patching import (
    adapter_size_bytes,
    merge,
    patch,
    trainable_parameters,
    tt_layers,
    unmerge,
    unpatch,
)
from .serialization import load_adapter, read_adapter_config, save_adapter
from .shapes import auto_shape, outer_shape

__all__ = [
    "DEFAULT_TARGETS",
    "AdapterMismatchError",
    "BackendUnavailableError",
    "SettingError",
    "TTConfig",
    "TTLinear",
    "TTShapeError",
    "__version__",
    "adapter_size_bytes",
    "auto_shape",
    "info",
    "load_adapter",
    "merge",
    "outer_shape",
    "patch",
    "read_adapter_config",
    "save_adapter",
    "set_backend",
    "trainable_parameters",
    "tt_adapter",
    "tt_layers",
    "tt_linear",
    "tt_relative_error",
    "tt_svd",
    "unmerge",
    "unpatch",
    "use_backend",
]
