"""Test setup: Triton kernels run on CPU tensors through the interpreter when no GPU is present."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must be set before triton is imported anywhere
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _reset_backend_override():
    import ttkernels

    yield
    ttkernels.set_backend(None)


@pytest.fixture(params=["torch", "triton", "cuda"])
def backend(request) -> str:
    """Each backend that can run on this machine's test device; the others are skipped with the reason."""
    from ttkernels.backends import backend_status

    name = request.param
    reason = backend_status(name)
    if reason is not None:
        pytest.skip(f"backend {name!r} unavailable: {reason}")
    if name == "cuda" and DEVICE != "cuda":
        pytest.skip("backend 'cuda' needs a CUDA device")
    return name
