"""patch / unpatch / merge: walk a model, wrap target linear layers in TTLinear, freeze everything else."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import DEFAULT_TARGETS, TTConfig
from .errors import SettingError
from .layer import TTLinear, base_kind
from .utils import logger

_STATE_ATTR = "_ttkernels_state"


@dataclass
class PatchState:
    """What patch() did to a model, kept on the model so unpatch/save can undo or describe it."""

    config: TTConfig
    requires_grad: dict[str, bool]  # original flags of every parameter, restored by unpatch
    saved_modules: list[str]


def _model_type(model: nn.Module) -> str | None:
    config = getattr(model, "config", None)
    return getattr(config, "model_type", None)


def resolve_targets(model: nn.Module, targets: list[str] | str | None) -> list[str] | str:
    if targets is not None:
        return targets
    model_type = _model_type(model)
    if model_type in DEFAULT_TARGETS:
        return DEFAULT_TARGETS[model_type]
    raise SettingError(
        f"no default targets for model type {model_type!r}; pass targets=[...] (module-name suffixes such as "
        f"'q_proj') or a regular expression. Known defaults: {DEFAULT_TARGETS}"
    )


def _suffix_match(name: str, suffix: str) -> bool:
    return name == suffix or name.endswith("." + suffix)


def match_target(name: str, targets: list[str] | str) -> str | None:
    """The target that selects module ``name`` (a suffix from the list, or the regex itself), else None."""
    if isinstance(targets, str):
        return targets if re.fullmatch(targets, name) else None
    return next((t for t in targets if _suffix_match(name, t)), None)


def tt_layers(model: nn.Module) -> dict[str, TTLinear]:
    """Every TTLinear in ``model`` by qualified name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, TTLinear)}


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def patch(
    model: nn.Module,
    targets: list[str] | str | None = None,
    rank: int | list[int] | dict[str, Any] = 5,
    alpha: float = 8.0,
    shape: list[int] | dict[str, Any] | None = None,
    *,
    config: TTConfig | None = None,
    modules_to_save: list[str] | None = None,
    exclude: list[str] | None = None,
    init: str = "zero",
    init_scale: float = 1.0,
    dropout: float = 0.0,
    strict: bool = False,
    core_dtype: str = "float32",
    backend: str | None = None,
) -> nn.Module:
    """Wrap the target linear layers of ``model`` in :class:`TTLinear`, in place, and return the model.

    Every base parameter is frozen; only the TT cores (and ``modules_to_save``) train. ``targets`` is a list of
    module-name suffixes or one regular expression (full match); None takes the model type's default. ``shape``
    and ``rank`` may be dicts keyed by target suffix or full module name. Pass ``config=TTConfig(...)`` instead
    of the keyword arguments to reuse a saved configuration.
    """
    if config is None:
        config = TTConfig(
            targets=targets, rank=rank, alpha=alpha, shape=shape, init=init, init_scale=init_scale, dropout=dropout,
            strict=strict, modules_to_save=modules_to_save, exclude=exclude, core_dtype=core_dtype, backend=backend,
        )
    if getattr(model, _STATE_ATTR, None) is not None or tt_layers(model):
        raise RuntimeError("model is already patched with ttkernels; call ttkernels.unpatch(model) first")
    resolved = resolve_targets(model, config.targets)

    chosen: list[tuple[str, str]] = []
    rejected: list[str] = []
    for name, module in model.named_modules():
        target = match_target(name, resolved) if name else None
        if target is None or any(_suffix_match(name, e) for e in config.exclude or []):
            continue
        try:
            base_kind(module)
        except TypeError:
            rejected.append(f"{name} ({type(module).__name__})")
            continue
        parent_name = name.rpartition(".")[0]
        parent = model.get_submodule(parent_name) if parent_name else model
        if isinstance(parent, nn.MultiheadAttention):
            raise SettingError(
                f"patch: {name} is the out_proj of an nn.MultiheadAttention, which reads its weight directly "
                "instead of calling the module, so an adapter there would never run; exclude it"
            )
        chosen.append((name, target))
    if not chosen:
        hint = f"; matching modules that are not linear layers: {rejected}" if rejected else ""
        raise SettingError(
            f"patch: no linear layer of {type(model).__name__} matches targets {resolved!r}{hint}. "
            f"Examples of module names: {[n for n, _ in model.named_modules() if n][:8]}"
        )

    saved_modules = []  # validated before anything changes, so a bad name leaves the model untouched
    for suffix in config.modules_to_save or []:
        found = [n for n, _ in model.named_modules() if n and _suffix_match(n, suffix)]
        if not found:
            raise SettingError(f"modules_to_save: no module of {type(model).__name__} is named {suffix!r}")
        saved_modules.extend(found)

    requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}
    try:  # build every layer before touching the model, so a bad shape/rank leaves it as it was
        for p in model.parameters():
            p.requires_grad_(False)
        layers = [
            (name, TTLinear(
                model.get_submodule(name),
                shape=config.shape_for(name, target),
                rank=config.rank_for(name, target),
                alpha=config.alpha,
                init=config.init,  # type: ignore[arg-type]
                init_scale=config.init_scale,
                dropout=config.dropout,
                strict=config.strict,
                dtype=config.torch_core_dtype,
                backend=config.backend,
                name=name,
            ))
            for name, target in chosen
        ]
    except Exception:
        for n, p in model.named_parameters():
            p.requires_grad_(requires_grad[n])
        raise
    for name, layer in layers:
        _set_submodule(model, name, layer)

    for n in saved_modules:
        for p in model.get_submodule(n).parameters():
            p.requires_grad_(True)

    setattr(model, _STATE_ATTR, PatchState(config, requires_grad, saved_modules))
    logger.info("ttkernels: patched %d layers of %s: %s", len(chosen), type(model).__name__, [n for n, _ in chosen])
    return model


def patch_state(model: nn.Module) -> PatchState | None:
    return getattr(model, _STATE_ATTR, None)


def merge(model: nn.Module, safe_merge: bool = False) -> nn.Module:
    """Fold every TT update into its base weight (fast inference); undo with :func:`unmerge`."""
    for layer in _require_layers(model).values():
        layer.merge(safe_merge=safe_merge)
    return model


def unmerge(model: nn.Module) -> nn.Module:
    """Subtract every merged TT update from its base weight again."""
    for layer in _require_layers(model).values():
        layer.unmerge()
    return model


def unpatch(model: nn.Module, *, merge: bool = False) -> nn.Module:
    """Put the original modules back (in place) and restore every parameter's requires_grad flag.

    With ``merge=False`` (default) a merged layer is unmerged first, so W0 comes back (bit-exactly when it was
    never merged). With ``merge=True`` the TT updates are folded into the base weights that stay behind.
    """
    layers = _require_layers(model)
    for name, layer in layers.items():
        if merge and not layer.merged:
            layer.merge()
        elif not merge and layer.merged:
            layer.unmerge()
        _set_submodule(model, name, layer.base_layer)
    state = patch_state(model)
    if state is not None:
        for n, p in model.named_parameters():
            if n in state.requires_grad:
                p.requires_grad_(state.requires_grad[n])
        delattr(model, _STATE_ATTR)
    return model


def _require_layers(model: nn.Module) -> dict[str, TTLinear]:
    layers = tt_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no TTLinear layers; call ttkernels.patch(model) first")
    return layers


@dataclass(frozen=True)
class ParameterCount:
    """Trainable vs all parameters of a model."""

    trainable: int
    total: int
    tt_cores: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / max(self.total, 1)

    def __str__(self) -> str:
        return (
            f"trainable params: {self.trainable:,} (TT cores: {self.tt_cores:,}) || all params: {self.total:,} "
            f"|| trainable%: {self.percent:.4f}"
        )


def trainable_parameters(model: nn.Module) -> ParameterCount:
    """Count trainable parameters (the TT cores plus anything left trainable, e.g. modules_to_save)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    cores = sum(c.numel() for layer in tt_layers(model).values() for c in layer.cores)
    return ParameterCount(trainable, total, cores)


def adapter_size_bytes(model: nn.Module, dtype: torch.dtype = torch.float16) -> int:
    """Storage of the adapter (TT cores + modules_to_save) at ``dtype``, as the paper's Fig. 4 reports it."""
    itemsize = torch.empty(0, dtype=dtype).element_size()
    numel = sum(c.numel() for layer in tt_layers(model).values() for c in layer.cores)
    state = patch_state(model)
    for name in state.saved_modules if state else []:
        numel += sum(p.numel() for p in model.get_submodule(name).parameters())
    return numel * itemsize
