"""TTLinear: a frozen base linear layer plus a tensor-train (TT-LoRA) update, y = base(x) + α·x ΔWᵀ."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .backends import record_choice, validate_backend_name
from .errors import TTShapeError
from .ops import tt_adapter, tt_linear
from .ops._library import no_autocast
from .ops.contract import accumulation_dtype, contract_factors, factor_rank
from .ops.reference import dense_delta_weight
from .shapes import auto_shape, find_boundary, resolve_ranks, validate_shape
from .utils import validate_alpha, validate_dropout, validate_init, validate_init_scale, warn_once

BaseKind = Literal["linear", "conv1d", "adapter"]
InitMode = Literal["zero", "gaussian", "orthogonal"]


def base_kind(base: nn.Module) -> BaseKind:
    """How TTLinear drives ``base``: fused with a plain nn.Linear, or adapter-only on top of its output."""
    if isinstance(base, nn.Linear) and type(base).forward is nn.Linear.forward:
        return "linear"
    if type(base).__name__ == "Conv1D" and hasattr(base, "nf") and getattr(base, "weight", None) is not None:
        return "conv1d"  # HF GPT-2 Conv1D: weight stored transposed, (in_features, out_features)
    if hasattr(base, "in_features") and hasattr(base, "out_features"):
        return "adapter"
    raise TypeError(
        f"TTLinear wraps linear layers (nn.Linear, HF Conv1D, or modules with in_features/out_features); "
        f"got {type(base).__name__}"
    )


def base_dims(base: nn.Module) -> tuple[int, int]:
    """(m, n) = (out_features, in_features) of a supported base layer."""
    kind = base_kind(base)
    if kind == "conv1d":
        n, m = base.weight.shape
        return int(m), int(n)
    return int(base.out_features), int(base.in_features)


def _has_forward_hooks(module: nn.Module) -> bool:
    """True when calling ``module(x)`` does more than nn.Linear.forward (hooks, an instance-level forward).

    The fused op reads weight and bias directly, so such bases (e.g. accelerate's offload hooks) take the
    adapter-only path, which calls the base module itself.
    """
    from torch.nn.modules import module as module_mod

    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or "forward" in module.__dict__
        or module_mod._global_forward_hooks
        or module_mod._global_forward_pre_hooks
    )


def _scaled_left_orthogonal(core: torch.Tensor) -> torch.Tensor:
    """A core shaped like ``core`` (r0, k, r1) whose (r0·k, r1) unfolding is orthogonal, with the Frobenius norm²
    r0·k of an N(0, 1/r1) core. Drawn from the CPU generator (QR runs there; the draw does not depend on the
    core's device) in float64 for float64 cores, float32 otherwise, then cast to the core."""
    r0, k, r1 = core.shape
    rows = r0 * k
    dtype = torch.float64 if core.dtype == torch.float64 else torch.float32
    mat = torch.empty(rows, r1, dtype=dtype, device="cpu")
    nn.init.orthogonal_(mat, gain=math.sqrt(max(1.0, rows / r1)))
    return mat.reshape(r0, k, r1)


class TTLinear(nn.Module):
    """Frozen base linear layer + TT-LoRA update.

    ``y = base(x) + alpha * x @ ΔW.T`` for x of shape (..., n), y of shape (..., m), where ΔW (m x n) reshaped
    row-major to ``shape`` is the tensor train ``cores[0] x cores[1] x ... x cores[d-1]`` with core i of shape
    (r_{i-1}, k_i, r_i), r_0 = r_d = 1. The forward and backward passes never form ΔW unless the shape has no
    in/out boundary (then a one-time warning names the cost; ``strict=True`` refuses such shapes).

    Args:
        base: the frozen layer (nn.Linear, HF Conv1D, or any module with in/out_features).
        shape: TT mode sizes with ∏shape = m·n; None chooses :func:`ttkernels.shapes.auto_shape`.
        rank: one int, the d-1 inner ranks, or "r/R" (r on every bond, R on the bond between the output and
            input modes, e.g. "2/4" on 64x6x6x64 is [2, 4, 2]).
        alpha: scale of ΔW (multiplies ΔW directly, not divided by the rank).
        init: "zero" (default: Gaussian cores, last core zero, so ΔW = 0 at step 0), "gaussian" (all cores
            Gaussian, as in the paper; ΔW != 0 at step 0) or "orthogonal" (cores 1..d-1 left-orthogonal, scaled
            to the Gaussian cores' norm, last core zero).
        init_scale: multiplies every initial core (the Gaussian std, or the orthogonal cores' norm); 1 draws core i
            from N(0, 1/r_i). Under Adam each core moves about lr per entry per step whatever its size, so smaller
            cores turn relatively faster: ``init_scale`` < 1 speeds the non-zero cores up against the last one
            (like LoRA's small A). Scale ``alpha`` by 1/init_scale^(d-1) to keep the update's initial growth.
        dropout: probability of zeroing an input feature of the TT path only, in training (PEFT's lora_dropout);
            the base layer always sees the whole input. 0 keeps the fused single-call path.
        dtype: dtype of the cores (float32 by default, whatever the base dtype).
        backend: None/"auto" or a backend name for this layer's ops.
    """

    def __init__(
        self,
        base: nn.Module,
        shape: list[int] | None = None,
        rank: int | list[int] | str = 5,
        alpha: float = 8.0,
        *,
        init: InitMode = "zero",
        init_scale: float = 1.0,
        dropout: float = 0.0,
        strict: bool = False,
        dtype: torch.dtype = torch.float32,
        backend: str | None = None,
        name: str = "TTLinear",
    ) -> None:
        super().__init__()
        self.kind: BaseKind = base_kind(base)
        self.m, self.n = base_dims(base)
        self.layer_name = name
        self.shape = validate_shape(auto_shape(self.m, self.n) if shape is None else shape, self.m, self.n, name=name)
        self.ranks = resolve_ranks(rank, self.shape, self.m, name=name)
        self.alpha = validate_alpha(alpha, name)
        validate_init(init, name)  # before any core is allocated; reset_parameters checks again for direct calls
        self.init_scale = validate_init_scale(init_scale, name)
        if not dtype.is_floating_point:
            raise TypeError(f"{name}: core dtype must be floating point, got {dtype}")
        self.dropout = validate_dropout(dropout, name)
        self.backend = None if backend is None else validate_backend_name(backend)
        self.boundary = find_boundary(self.shape, self.m)
        if self.boundary is None:
            message = (
                f"{name}: TT shape {self.shape} has no boundary between the output ({self.m}) and input ({self.n}) "
                f"modes, so it can only run through the dense ΔW ({self.m}x{self.n}, "
                f"{self.m * self.n * 4 / 2**20:.1f} MiB in fp32) formed at every forward"
            )
            if strict:
                raise TTShapeError(message + "; refused because strict=True (choose a shape whose leading modes "
                                   f"multiply to {self.m}, or shape=None)")
            warn_once(f"dense/{self.shape}/{self.m}x{self.n}", "ttkernels: " + message)
            record_choice(f"{name} {self.shape}", "dense ΔW (no in/out boundary)")

        self.base_layer = base
        for p in base.parameters():
            p.requires_grad_(False)
        device = next((p.device for p in base.parameters()), torch.device("cpu"))
        self.cores = nn.ParameterList(
            nn.Parameter(torch.empty(self.ranks[i], k, self.ranks[i + 1], device=device, dtype=dtype))
            for i, k in enumerate(self.shape)
        )
        self.merged = False
        self.reset_parameters(init)

    @torch.no_grad()
    def reset_parameters(self, init: InitMode = "zero", init_scale: float | None = None) -> None:
        """Core i ~ N(0, s²/r_i) (r_i its right bond rank; s = ``init_scale``, default the layer's), which for s = 1
        keeps the contracted factors at unit-order scale.

        "orthogonal" instead makes each core's (r_{i-1}·k_i, r_i) unfolding orthogonal (orthonormal columns, or rows
        where it is wide), scaled to the Gaussian core's expected Frobenius norm: the same scale, but the product
        of cores 1..i stays well conditioned (the TT-SVD's left-canonical form).

        "zero" then zeroes the last core: ΔW = B·A = 0 because A = 0, while dL/dA = α(dy B)ᵀx is non-zero,
        so the last core moves on the first step and every other core gets gradient from the next one on
        (the TT analogue of LoRA's B = 0).
        """
        init = validate_init(init, self.layer_name)  # type: ignore[assignment]
        scale = self.init_scale if init_scale is None else validate_init_scale(init_scale, self.layer_name)
        if getattr(self, "merged", False):
            raise RuntimeError(f"{self.layer_name}: unmerge() before re-initialising the cores of a merged layer")
        for i, core in enumerate(self.cores):
            if init == "orthogonal":
                core.copy_(_scaled_left_orthogonal(core) * scale)
            else:
                core.normal_(0.0, scale / math.sqrt(self.ranks[i + 1]))
        if init in ("zero", "orthogonal"):
            self.cores[-1].zero_()

    @torch.no_grad()
    def init_from_delta(self, delta: torch.Tensor) -> float:
        """Set the cores to the TT-SVD of ``delta`` / alpha, so that α·ΔW ≈ delta, an m x n (out x in) update as
        nn.Linear stores its weight (a GPT-2 Conv1D stores its weight transposed; pass the update out x in all
        the same). Returns the relative error ‖α·ΔW − delta‖ / ‖delta‖ left by this layer's shape and ranks."""
        from .decompose import tt_svd

        if getattr(self, "merged", False):
            raise RuntimeError(f"{self.layer_name}: unmerge() before re-initialising the cores of a merged layer")
        if tuple(delta.shape) != (self.m, self.n):
            raise ValueError(
                f"{self.layer_name}: delta is {tuple(delta.shape)}, the layer's ΔW is ({self.m}, {self.n})"
            )
        if self.alpha == 0.0:
            raise ValueError(f"{self.layer_name}: alpha is 0, so no cores can reproduce a non-zero delta")
        wanted = delta.detach().to(torch.float64)
        for core, new in zip(self.cores, tt_svd(wanted / self.alpha, self.shape, self.ranks[1:-1]), strict=True):
            core.copy_(new.to(core.device, core.dtype))
        norm = torch.linalg.norm(wanted).item()
        error = torch.linalg.norm(self.alpha * self.delta_weight(torch.float64) - wanted.to(self.cores[0].device))
        return error.item() / norm if norm > 0 else 0.0

    @property
    def factor_rank(self) -> int | None:
        """R: the bond rank at the in/out boundary (None for the dense path)."""
        return None if self.boundary is None else factor_rank(self.shape, self.ranks, self.boundary)

    @property
    def weight(self) -> torch.Tensor:
        """The base layer's (frozen) weight, so code that reads ``module.weight`` keeps working."""
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return getattr(self.base_layer, "bias", None)

    def get_base_layer(self) -> nn.Module:
        base = self.base_layer
        while isinstance(base, TTLinear):
            base = base.base_layer
        return base

    def _core_list(self) -> list[torch.Tensor]:
        # ParameterList's own iteration rebuilds string keys per element (~4 µs for 6 cores, every forward); look
        # the keys up in its parameter dict directly (by key: removing a parametrization re-inserts a core at the
        # end of the dict), unless something (e.g. torch.nn.utils.parametrize) moved a core out of it
        params = self.cores._parameters
        try:
            return [params[str(i)] for i in range(len(self.cores))]
        except KeyError:
            return list(self.cores)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A (R, n), B (m, R)) with B @ A == ΔW; differentiable w.r.t. the cores."""
        if self.boundary is None:
            raise TTShapeError(f"{self.layer_name}: shape {self.shape} has no in/out boundary, so no factors exist")
        cores = self._core_list()
        with no_autocast(cores[0]):  # the factors stay in the core dtype under autocast
            return contract_factors(cores, self.boundary)

    def delta_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The dense m x n ΔW (for tests, merging and inspection only; never used by the fast path)."""
        cores = self._core_list()
        with no_autocast(cores[0]):
            return dense_delta_weight(cores, self.m, self.n, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        if x.shape[-1] != self.n:
            raise ValueError(f"{self.layer_name}: input has {x.shape[-1]} features, the layer expects {self.n}")
        drop = self.training and self.dropout > 0.0
        if self.boundary is None:
            delta = self.alpha * self.delta_weight().to(x.dtype)
            if self.kind == "linear" and not drop:  # one GEMM with the updated weight instead of two
                return F.linear(x, self.base_layer.weight + delta, self.base_layer.bias)
            return self.base_layer(x) + F.linear(F.dropout(x, self.dropout, drop), delta)
        A, B = self.factors()
        if self.kind == "linear" and not drop and not _has_forward_hooks(self.base_layer):
            base = self.base_layer
            return tt_linear(x, base.weight, base.bias, A, B, self.alpha, self.backend)
        # the adapter-only path: base(x) + α·(dropout(x) Aᵀ) Bᵀ, the base output computed by the base module
        return tt_adapter(F.dropout(x, self.dropout, drop), self.base_layer(x), A, B, self.alpha, self.backend)

    def _weight_update(self, weight: torch.Tensor) -> torch.Tensor:
        delta = self.alpha * self.delta_weight(torch.float32 if weight.dtype != torch.float64 else torch.float64)
        if self.kind == "conv1d":
            delta = delta.t()
        return delta.to(weight.device)

    @torch.no_grad()
    def merge(self, safe_merge: bool = False) -> None:
        """Fold α·ΔW into the base weight (inference without adapter cost). ``safe_merge`` checks for NaN/inf first."""
        if self.merged:
            warn_once(f"merge-twice/{id(self)}", f"ttkernels: {self.layer_name} is already merged; nothing to do")
            return
        if self.kind == "adapter":
            raise TypeError(f"{self.layer_name}: cannot merge into a {type(self.base_layer).__name__} base")
        weight = self.base_layer.weight
        merged = weight.to(accumulation_dtype(weight.dtype)) + self._weight_update(weight)
        if safe_merge and not torch.isfinite(merged).all():
            raise ValueError(f"{self.layer_name}: merging would put NaN/inf into the base weight; refused")
        weight.copy_(merged.to(weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract α·ΔW from the base weight again (restores W0 up to rounding in its dtype)."""
        if not self.merged:
            warn_once(f"unmerge/{id(self)}", f"ttkernels: {self.layer_name} is not merged; nothing to unmerge")
            return
        weight = self.base_layer.weight
        restored = weight.to(accumulation_dtype(weight.dtype)) - self._weight_update(weight)
        weight.copy_(restored.to(weight.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        path = "dense ΔW" if self.boundary is None else f"factors R={self.factor_rank}"
        return (
            f"{self.n} -> {self.m}, shape={self.shape}, ranks={self.ranks[1:-1]}, alpha={self.alpha}, "
            + (f"dropout={self.dropout}, " if self.dropout else "")
            + f"params={sum(c.numel() for c in self.cores)}, base={self.kind}, {path}, merged={self.merged}"
        )
