"""Adapter files: ``adapter_model.safetensors`` (tensors) + ``adapter_config.json`` (everything else). No pickle."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .config import TTConfig
from .errors import AdapterMismatchError
from .layer import base_dims
from .patching import patch, patch_state, tt_layers

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
FORMAT = "ttkernels-tt-lora"
FORMAT_VERSION = 1
_SAVED_PREFIX = "modules_to_save."


def save_adapter(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write the adapter of a patched model to directory ``path``; return the directory."""
    from . import __version__

    layers = tt_layers(model)
    if not layers:
        raise ValueError("save_adapter: the model has no TTLinear layers; patch it first")
    state = patch_state(model)
    config = state.config if state else TTConfig(targets=sorted(layers))
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)

    tensors: dict[str, torch.Tensor] = {}
    layer_meta: dict[str, Any] = {}
    for name, layer in layers.items():
        for i, core in enumerate(layer.cores):
            tensors[f"{name}.cores.{i}"] = core.detach().cpu().contiguous()
        layer_meta[name] = {
            "m": layer.m,
            "n": layer.n,
            "shape": layer.shape,
            "ranks": layer.ranks[1:-1],
            "alpha": layer.alpha,
            "base": layer.kind,
            "core_dtype": str(layer.cores[0].dtype).removeprefix("torch."),
        }
    saved = {}
    for name in state.saved_modules if state else []:
        module_state = model.get_submodule(name).state_dict()
        saved[name] = {k: list(v.shape) for k, v in module_state.items()}
        for key, value in module_state.items():
            tensors[f"{_SAVED_PREFIX}{name}.{key}"] = value.detach().cpu().contiguous()

    save_file(tensors, str(out / WEIGHTS_NAME), metadata={"format": FORMAT, "ttkernels_version": __version__})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ttkernels_version": __version__,
        "model_class": type(model).__name__,
        "config": config.to_dict(),
        "layers": layer_meta,
        "modules_to_save": saved,
    }
    (out / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def read_adapter_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``adapter_config.json`` from an adapter directory."""
    config_file = Path(path) / CONFIG_NAME
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: is {path} a ttkernels adapter directory?")
    meta = json.loads(config_file.read_text())
    if meta.get("format") != FORMAT:
        raise AdapterMismatchError(f"{config_file} is not a ttkernels TT-LoRA adapter (format {meta.get('format')!r})")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise AdapterMismatchError(
            f"{config_file} has format version {meta['format_version']}; this ttkernels reads up to {FORMAT_VERSION}"
        )
    return meta


def load_adapter(model: nn.Module, path: str | os.PathLike[str], *, backend: str | None = None) -> nn.Module:
    """Patch ``model`` as the adapter at ``path`` describes and load its tensors; return the model.

    Refuses, before changing anything, an adapter made for other targets or other layer dimensions.
    If the model is already patched, its TT layers must match the adapter exactly and are overwritten.
    """
    meta = read_adapter_config(path)
    layer_meta: dict[str, Any] = meta["layers"]
    _check_compatible(model, layer_meta, meta.get("modules_to_save", {}))

    if not tt_layers(model):
        cfg = TTConfig.from_dict(meta["config"])  # alpha is then set per layer from the file, below
        cfg.targets = "|".join(re.escape(n) for n in layer_meta)
        cfg.shape = {n: v["shape"] for n, v in layer_meta.items()}
        cfg.rank = {n: v["ranks"] for n, v in layer_meta.items()}
        if backend is not None:
            cfg.backend = backend
        patch(model, config=cfg)

    layers = tt_layers(model)
    weights = Path(path) / WEIGHTS_NAME
    with safe_open(str(weights), framework="pt") as f:
        keys = set(f.keys())
        # Check every tensor before copying any, so that a refused load leaves the model as it was.
        problems = []
        for name, layer in layers.items():
            for i, core in enumerate(layer.cores):
                key = f"{name}.cores.{i}"
                if key not in keys:
                    problems.append(f"{weights.name} has no tensor {key!r}")
                elif tuple(f.get_slice(key).get_shape()) != tuple(core.shape):
                    problems.append(
                        f"{key}: adapter tensor is {tuple(f.get_slice(key).get_shape())}, "
                        f"the layer expects {tuple(core.shape)}"
                    )
            if f"{name}.cores.{len(layer.cores)}" in keys:
                problems.append(f"{name}: the adapter has more cores than the layer's {len(layer.cores)}")
        if problems:
            raise AdapterMismatchError("adapter does not fit this model:\n" + "\n".join(f"  - {p}" for p in problems))
        with torch.no_grad():
            for name, layer in layers.items():
                for i, core in enumerate(layer.cores):
                    core.copy_(f.get_tensor(f"{name}.cores.{i}").to(core.dtype))
                layer.alpha = float(layer_meta[name]["alpha"])
                if backend is not None:
                    layer.backend = backend
        for name in meta.get("modules_to_save", {}):
            module = model.get_submodule(name)
            prefix = f"{_SAVED_PREFIX}{name}."
            module.load_state_dict({k[len(prefix) :]: f.get_tensor(k) for k in keys if k.startswith(prefix)})
            for p in module.parameters():
                p.requires_grad_(True)
            state = patch_state(model)
            if state is not None and name not in state.saved_modules:
                state.saved_modules.append(name)
    return model


def _check_compatible(model: nn.Module, layer_meta: dict[str, Any], saved: dict[str, Any]) -> None:
    modules = dict(model.named_modules())
    problems = []
    for name, info in layer_meta.items():
        module = modules.get(name)
        if module is None:
            problems.append(f"target {name!r} does not exist in {type(model).__name__}")
            continue
        try:
            m, n = (module.m, module.n) if hasattr(module, "cores") else base_dims(module)
        except TypeError:
            problems.append(f"target {name!r} is a {type(module).__name__}, not a linear layer")
            continue
        if (m, n) != (info["m"], info["n"]):
            problems.append(f"target {name!r} is {m}x{n} in this model but {info['m']}x{info['n']} in the adapter")
    patched = tt_layers(model)
    merged = [n for n, layer in patched.items() if layer.merged]
    if merged:
        problems.append(f"layers {merged} are merged: unmerge(model) before loading other cores into them")
    if patched and set(patched) != set(layer_meta):
        problems.append(
            f"the model is already patched on {sorted(set(patched) - set(layer_meta))} which the adapter lacks, "
            f"or lacks {sorted(set(layer_meta) - set(patched))}"
        )
    for name, shapes in saved.items():
        module = modules.get(name)
        if module is None:
            problems.append(f"saved module {name!r} does not exist in {type(model).__name__}")
            continue
        have = {k: list(v.shape) for k, v in module.state_dict().items()}
        if have != shapes:
            problems.append(f"saved module {name!r} has tensors {have} in this model but {shapes} in the adapter")
    if problems:
        raise AdapterMismatchError("adapter does not fit this model:\n" + "\n".join(f"  - {p}" for p in problems))
