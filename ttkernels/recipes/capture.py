"""How much of a trained LoRA update can a TT shape/rank hold? TT-SVD of each layer's ΔW = (α/r)·B·A.

    python -m ttkernels.recipes capture runs/lora/adapter --shapes outer 64x36x64 --ranks 2,4,2 2

For each (shape, rank) pair: the TT parameters per layer and the relative Frobenius error of the best TT
approximation (TT-SVD) of every adapted layer's LoRA update, against the truncated SVD of the same update
(what a LoRA of lower rank keeps). A shape that cannot hold a good update needs training to find another one;
this measures the structure before any training.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import torch

from ..decompose import tt_relative_error
from ..errors import TTShapeError
from ..shapes import num_parameters, resolve_ranks
from .finetune import shape_for_spec


def lora_updates(adapter_dir: str | Path) -> dict[str, torch.Tensor]:
    """ΔW (m x n, float64) of every layer of a PEFT LoRA adapter folder (safetensors only; nothing unpickled)."""
    from safetensors.torch import load_file

    folder = Path(adapter_dir)
    config_path, weights_path = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"{folder} is not a PEFT LoRA adapter folder (adapter_config.json + "
                                "adapter_model.safetensors; .bin files are not read)")
    config = json.loads(config_path.read_text())
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{folder}: peft_type is {config.get('peft_type')!r}, not 'LORA'")
    if config.get("use_dora"):
        raise ValueError(f"{folder}: a DoRA adapter's update is not (alpha/r)·B·A; only plain LoRA is supported")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ValueError(f"{folder}: per-module rank_pattern/alpha_pattern are not supported")
    r, alpha = int(config["r"]), float(config["lora_alpha"])
    scaling = alpha / (r ** 0.5 if config.get("use_rslora") else r)
    tensors = load_file(str(weights_path))
    updates = {}
    for key, a in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        name = key[: -len(".lora_A.weight")]
        b = tensors[name + ".lora_B.weight"]
        # B @ A is out x in (m x n) whatever fan_in_fan_out says (PEFT transposes it only to add it to a Conv1D
        # weight, which is stored in x out), which is the layout TTLinear and tt_svd use
        updates[name.removeprefix("base_model.model.")] = scaling * (b.double() @ a.double())
    if not updates:
        raise ValueError(f"{folder}: no lora_A/lora_B weights found")
    return updates


def capture_table(updates: dict[str, torch.Tensor], shapes: list[str],
                  ranks: list[int | list[int] | str], svd_ranks: tuple[int, ...] = (1, 2)) -> list[dict[str, Any]]:
    """One row per (shape spec, rank) and per truncated-SVD rank: parameters and relative errors over the layers."""
    zero = [name for name, update in updates.items() if not update.any()]
    if zero:
        raise ValueError(f"the LoRA update of {zero} is all zero (an untrained B?), so there is nothing to measure")
    rows = []
    for spec in shapes:
        for rank in ranks:
            errors, params, labels = [], 0, set()
            try:
                for update in updates.values():
                    m, n = update.shape
                    shape = shape_for_spec(spec, m, n)
                    full = resolve_ranks(rank, shape, m)
                    errors.append(tt_relative_error(update, shape, full[1:-1]))
                    params += num_parameters(shape, full)
                    labels.add(f"{'x'.join(map(str, shape))} {full[1:-1]}")
            except TTShapeError as err:  # e.g. inner ranks for another number of cores: say so in the table
                rows.append({"structure": f"TT {spec}, rank {rank}", "note": str(err).split(";")[0]})
                continue
            rows.append(_row("TT " + "; ".join(sorted(labels)), params, errors))
    for r in svd_ranks:
        errors, params = [], 0
        for update in updates.values():
            s = torch.linalg.svdvals(update)
            errors.append((s[r:].square().sum().sqrt() / s.square().sum().sqrt()).item())
            params += r * sum(update.shape)
        rows.append(_row(f"LoRA rank {r} (truncated SVD)", params, errors))
    return rows


def _row(label: str, params: int, errors: list[float]) -> dict[str, Any]:
    return {"structure": label, "params": params, "mean_rel_error": statistics.fmean(errors),
            "min_rel_error": min(errors), "max_rel_error": max(errors),
            "kept_energy": statistics.fmean(1 - e * e for e in errors)}
