"""The methods compared, built on the same base weights, cores and inputs.

Providers (``PROVIDERS``), each an ``nn.Module`` called as ``module(x)`` on x of shape (T, n):

``base``           the frozen ``nn.Linear`` alone (``F.linear``).
``peft_lora_r8``   HF PEFT LoRA, r=8 / r=16: the real ``peft`` package with its default ``LoraConfig`` (lora_alpha=8,
``peft_lora_r16``  dropout 0, adapter weights autocast to fp32) on an nn.Linear inside a one-layer wrapper module via
                   ``get_peft_model``; the per-layer ``peft.tuners.lora.Linear`` is timed (not the PeftModel shell).
                   PEFT initialises B = 0; B is redrawn at random so that no method is timed on zeros.
``tt_dense``       TT-LoRA as reference code runs it in "reconstruction" mode: contract the cores into the dense
                   m x n ΔW every step, then ``F.linear(x, W0 + α·ΔW, b)`` (written here, not from the package).
``tt_einsum``      TT-LoRA as reference code runs it in "contraction" mode: reshape x to the input modes and
                   contract it core by core with one ``torch.einsum`` per core (written here, the naive baseline).
``tt_torch``       ``ttkernels.TTLinear`` with backend="torch" (likewise ``tt_triton``, ``tt_cuda``).

All TT providers of one layer get the same cores (all Gaussian, ΔW != 0, like TTLinear(init="gaussian")), so
they compute the same function; every provider's output is checked against a float64 oracle before timing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .shapes import LayerSpec

ALPHA = 8.0  # TT-LoRA scale (multiplies ΔW directly; TTLinear's default)

PROVIDERS = ("base", "peft_lora_r8", "peft_lora_r16", "tt_dense", "tt_einsum", "tt_torch", "tt_triton", "tt_cuda")
MERGED_PROVIDERS = ("base", "peft_lora_r8", "peft_lora_r16", "tt_torch")  # merged forward is F.linear for all TT
TT_BACKENDS = {"tt_torch": "torch", "tt_triton": "triton", "tt_cuda": "cuda"}
LABELS = {
    "base": "base F.linear",
    "peft_lora_r8": "PEFT LoRA r=8",
    "peft_lora_r16": "PEFT LoRA r=16",
    "tt_dense": "TT dense ΔW (reference)",
    "tt_einsum": "TT einsum chain (naive)",
    "tt_torch": "ttkernels torch",
    "tt_triton": "ttkernels triton",
    "tt_cuda": "ttkernels cuda",
}
MERGED_LABELS = {"tt_torch": "ttkernels merged"}


def full_ranks(spec: LayerSpec) -> list[int]:
    return [1] + [spec.rank] * (len(spec.tt_shape) - 1) + [1]


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def make_base(spec: LayerSpec, device: torch.device, dtype: torch.dtype, seed: int) -> nn.Linear:
    """The frozen base layer: W ~ N(0, 1/n), b ~ N(0, 0.02²), drawn on the device from a seeded generator (every
    provider of one layer gets the same values)."""
    gen = _generator(device, seed)
    weight = torch.randn(spec.m, spec.n, generator=gen, device=device) / math.sqrt(spec.n)
    bias = torch.randn(spec.m, generator=gen, device=device) * 0.02 if spec.bias else None
    layer = nn.Linear(spec.n, spec.m, bias=spec.bias, device="meta")
    layer.weight = nn.Parameter(weight.to(device=device, dtype=dtype), requires_grad=False)
    if bias is not None:
        layer.bias = nn.Parameter(bias.to(device=device, dtype=dtype), requires_grad=False)
    return layer


def make_cores(spec: LayerSpec, device: torch.device, seed: int) -> list[torch.Tensor]:
    """fp32 cores, core i ~ N(0, 1/r_i) (right bond rank), all non-zero (TTLinear's init="gaussian" scale)."""
    gen = _generator(device, seed + 1)
    ranks = full_ranks(spec)
    return [
        torch.randn(ranks[i], k, ranks[i + 1], generator=gen, device=device) / math.sqrt(ranks[i + 1])
        for i, k in enumerate(spec.tt_shape)
    ]


def make_inputs(
    spec: LayerSpec, tokens: int, device: torch.device, dtype: torch.dtype, seed: int, sets: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``sets`` independent (x (T, n), g (T, m)) pairs, g the fixed upstream gradient of the training step."""
    gen = _generator(device, seed + 2)
    out = []
    for _ in range(sets):
        x = torch.randn(tokens, spec.n, generator=gen, device=device).to(dtype)
        g = torch.randn(tokens, spec.m, generator=gen, device=device).to(dtype)
        out.append((x, g))
    return out


def dense_delta(cores: list[torch.Tensor], m: int, n: int) -> torch.Tensor:
    """ΔW (m x n): contract the whole train left to right and reshape row-major (the TT-LoRA definition)."""
    full = cores[0]
    for core in cores[1:]:
        full = torch.tensordot(full, core, dims=1)
    return full.reshape(m, n)


class TTDenseDelta(nn.Module):
    """Reference TT-LoRA, reconstruction mode: ``F.linear(x, W0 + α·ΔW(cores), b)`` with ΔW rebuilt every call."""

    def __init__(self, base: nn.Linear, cores: list[torch.Tensor], alpha: float) -> None:
        super().__init__()
        self.base = base
        self.m, self.n = base.weight.shape
        self.alpha = alpha
        self.cores = nn.ParameterList(nn.Parameter(c.detach().clone()) for c in cores)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = dense_delta(list(self.cores), self.m, self.n)
        weight = self.base.weight + self.alpha * delta.to(self.base.weight.dtype)
        return F.linear(x, weight, self.base.bias)


class TTEinsumChain(nn.Module):
    """Reference TT-LoRA, contraction mode: one einsum per core over the activations.

    x (T, n) is reshaped to (T, i_1..i_q) and the input cores are contracted last-to-first
    (``"bakr,skr->bas"``: token b, remaining input index a, mode k, bond r -> new bond s), leaving z (T, r_p);
    the output cores then expand it from the boundary outwards, core p-1 down to core 1 (``"brp,sor->bsop"``),
    into (T, m).
    Every intermediate state is a separate tensor that autograd saves, as in the reference code.
    """

    def __init__(self, base: nn.Linear, cores: list[torch.Tensor], spec: LayerSpec, alpha: float) -> None:
        super().__init__()
        from ttkernels.shapes import find_boundary

        boundary = find_boundary(list(spec.tt_shape), spec.m)
        if boundary is None or boundary.split is not None:
            raise ValueError(f"{spec.label}: the per-core chain needs a clean in/out boundary between modes")
        self.p = boundary.p
        self.base = base
        self.m, self.n = spec.m, spec.n
        self.alpha = alpha
        self.cores = nn.ParameterList(nn.Parameter(c.detach().clone()) for c in cores)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.shape[0]
        cores = [c.to(x.dtype) for c in self.cores]
        state = x.reshape(tokens, self.n, 1)  # (T, rest, r) with r = r_d = 1
        for core in reversed(cores[self.p :]):
            _, k, r_out = core.shape
            state = torch.einsum("bakr,skr->bas", state.reshape(tokens, -1, k, r_out), core)
        state = state.reshape(tokens, -1, 1)  # (T, r_p, P=1)
        for core in reversed(cores[: self.p]):
            state = torch.einsum("brp,sor->bsop", state, core).reshape(tokens, core.shape[0], -1)
        return self.base(x) + self.alpha * state.reshape(tokens, self.m)


class _Wrapper(nn.Module):
    """The tiny model PEFT is applied to: one projection called ``proj``."""

    def __init__(self, proj: nn.Module) -> None:
        super().__init__()
        self.proj = proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


@dataclass
class Prepared:
    """A provider ready to run: the module, its trainable tensors and a float64 oracle of the same function."""

    provider: str
    module: nn.Module
    trainable: list[torch.Tensor]
    path: str
    reference: Callable[[torch.Tensor], torch.Tensor]
    merge: Callable[[], None] | None = None
    info: dict = field(default_factory=dict)

    @property
    def params(self) -> int:
        return sum(t.numel() for t in self.trainable)


def _linear64(base: nn.Linear) -> Callable[[torch.Tensor], torch.Tensor]:
    """float64 x W0ᵀ + b with W0 and b copied now (merging later writes into the base weight)."""
    w = base.weight.detach().double().clone()
    b = None if base.bias is None else base.bias.detach().double().clone()
    return lambda x: x.double() @ w.t() if b is None else x.double() @ w.t() + b


def _tt_reference(base: nn.Linear, cores: list[torch.Tensor], alpha: float) -> Callable[[torch.Tensor], torch.Tensor]:
    m, n = base.weight.shape
    weight = base.weight.detach().double() + alpha * dense_delta([c.detach().double() for c in cores], m, n)
    b = None if base.bias is None else base.bias.detach().double().clone()

    def ref(x: torch.Tensor) -> torch.Tensor:
        y = x.double() @ weight.t()
        return y if b is None else y + b

    return ref


def prepare(provider: str, spec: LayerSpec, device: torch.device, dtype: torch.dtype, seed: int) -> Prepared:
    """Build ``provider`` for layer ``spec``. Raises ``Unavailable`` (with the reason) when it cannot run here."""
    base = make_base(spec, device, dtype, seed)
    cores = make_cores(spec, device, seed)
    if provider == "base":
        return Prepared(provider, base, [], "F.linear", _linear64(base), merge=lambda: None)
    if provider.startswith("peft_lora_r"):
        return _prepare_peft(provider, base, int(provider.removeprefix("peft_lora_r")), seed)
    if provider == "tt_dense":
        module = TTDenseDelta(base, cores, ALPHA)
        return Prepared(provider, module, list(module.cores), "dense ΔW every step", _tt_reference(base, cores, ALPHA))
    if provider == "tt_einsum":
        try:
            module = TTEinsumChain(base, cores, spec, ALPHA)
        except ValueError as exc:
            raise Unavailable(str(exc)) from None
        return Prepared(
            provider, module, list(module.cores), f"{len(cores)} einsums over x", _tt_reference(base, cores, ALPHA)
        )
    if provider in TT_BACKENDS:
        return _prepare_ttlinear(provider, spec, base, cores, device)
    raise ValueError(f"unknown provider {provider!r}; valid: {', '.join(PROVIDERS)}")


class Unavailable(Exception):
    """This provider cannot run here; the message is the reason (the benchmark is skipped with it)."""


def _prepare_peft(provider: str, base: nn.Linear, rank: int, seed: int) -> Prepared:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:  # pragma: no cover - peft is in the [bench] extra
        raise Unavailable(f"peft is not installed ({exc}); pip install 'ttkernels[bench]'") from None

    model = get_peft_model(_Wrapper(base), LoraConfig(r=rank, target_modules=["proj"]))
    layer = model.base_model.model.proj
    lora_a, lora_b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    gen = _generator(lora_b.device, seed + 3)
    with torch.no_grad():  # PEFT's default B = 0 would time a zero update; draw it
        lora_b.copy_(torch.randn(lora_b.shape, generator=gen, device=lora_b.device) / math.sqrt(rank))
    scaling = float(layer.scaling["default"])
    a64, b64 = lora_a.detach().double().clone(), lora_b.detach().double().clone()
    w_dtype = base.weight.dtype
    base64 = _linear64(base)

    def ref(x: torch.Tensor) -> torch.Tensor:
        return base64(x) + scaling * (x.double() @ a64.t()) @ b64.t()

    def merge() -> None:
        model.merge_adapter()

    info = {
        "peft_scaling": scaling,
        "peft_adapter_dtype": str(lora_a.dtype).removeprefix("torch."),
        "peft_base_dtype": str(w_dtype).removeprefix("torch."),
    }
    return Prepared(provider, layer, [lora_a, lora_b], f"LoRA r={rank} (x·Aᵀ)·Bᵀ", ref, merge, info)


def _prepare_ttlinear(
    provider: str, spec: LayerSpec, base: nn.Linear, cores: list[torch.Tensor], device: torch.device
) -> Prepared:
    import ttkernels
    from ttkernels.backends import backend_status
    from ttkernels.shapes import find_boundary

    backend = TT_BACKENDS[provider]
    dense_path = find_boundary(list(spec.tt_shape), spec.m) is None
    if dense_path and backend != "torch":
        raise Unavailable(
            f"{spec.label} has no in/out boundary, so TTLinear runs its dense-ΔW path whatever the backend "
            "(timed once, as tt_torch)"
        )
    if backend != "torch":
        reason = backend_status(backend)
        if device.type == "cpu":
            why = (
                "Triton on CPU tensors runs only in the interpreter (TRITON_INTERPRET=1), far too slow to time"
                if backend == "triton"
                else "the cuda backend needs CUDA tensors"
            )
            raise Unavailable(f"backend {backend!r} not timed on CPU: {why}; backend_status: {reason or 'ok'}")
        if reason is not None:
            raise Unavailable(f"backend {backend!r} unavailable: {reason}")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layer = ttkernels.TTLinear(base, list(spec.tt_shape), spec.rank, ALPHA, init="gaussian", backend=backend)
    with torch.no_grad():
        for dst, src in zip(layer.cores, cores, strict=True):
            dst.copy_(src)
    path = "dense ΔW (no in/out boundary)" if dense_path else f"factors R={layer.factor_rank}"
    return Prepared(
        provider,
        layer,
        list(layer.cores),
        path,
        _tt_reference(base, cores, ALPHA),
        layer.merge,
        {"tt_factor_rank": layer.factor_rank, "backend": backend},
    )
