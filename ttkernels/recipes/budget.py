"""The goal as a picture: each configuration's paired accuracy gap to LoRA r=8 against its adapter parameters.

Comparison folders (``compare --out``) that ran the same protocol and seeds are read together. Every
configuration (one method of one folder) is paired with the LoRA r=8 run of the same seed (same data order),
which removes most of the seed-to-seed variation both share; the figure shows the mean paired gap with its 95 %
t-interval. The goal region (at most ``1/min_ratio`` of LoRA's adapter parameters, within ``max_gap`` points) is
shaded, so a configuration meets the goal when its point lies inside it.

    python -m ttkernels.recipes budget results/minilm-tweets/tt-outer-wd results/minilm-tweets/lora-r1-value \\
        --out results/minilm-tweets/budget
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from .compare import GOAL_LORA_RANK, method_name, read_runs
from .tables import markdown_table


def _config_label(run: dict[str, Any], folder: str) -> str:
    if run["method"] != "tt":
        return method_name(run)
    label = f"TT-LoRA {run.get('shape')} rank {run.get('rank')}"
    if run.get("targets"):
        label += f" on {', '.join(run['targets'])}"
    if run.get("init") not in (None, "zero"):
        label += f", init {run['init']}"
    return f"{label} [{folder}]"


def _signature(run: dict[str, Any], folder: str) -> tuple[Any, ...]:
    """What makes runs one configuration: the label and the hyperparameters it does not name."""
    # records written before weight decay / dropout were kept leave them out: that was 0
    return (_config_label(run, folder), *(str(run.get(k)) for k in ("learning_rate", "alpha", "head_lr")),
            *(float(run.get(k) or 0.0) for k in ("weight_decay", "dropout")))


def _is_reference(run: dict[str, Any], rank: int) -> bool:
    return run["method"] == "lora" and run.get("rank") == rank and not run.get("targets")


def paired_gaps(folders: list[str | Path], reference_rank: int = GOAL_LORA_RANK,
                metric: str = "test_accuracy") -> list[dict[str, Any]]:
    """One row per configuration: adapter parameters, seeds paired with LoRA r=``reference_rank``, mean
    ``metric`` (%), and the mean paired gap to the reference with its standard error and 95 % t-interval.

    A configuration that appears in several folders with the same label and hyperparameters (the baselines a
    folder copied from another) is kept once, with the most paired seeds; configurations that share a label but
    not their hyperparameters get their folder's name. Raises ValueError without reference runs."""
    from scipy.stats import t as student_t

    configs: dict[tuple[Any, ...], dict[int, dict[str, Any]]] = {}
    reference: dict[int, dict[str, Any]] = {}
    for folder in map(Path, folders):
        runs = read_runs(folder / "runs.jsonl")
        if not runs:
            raise FileNotFoundError(f"{folder / 'runs.jsonl'} is missing or empty")
        for run in runs:
            configs.setdefault((folder.name, *_signature(run, folder.name)), {})[run["seed"]] = run
            if _is_reference(run, reference_rank):
                reference.setdefault(run["seed"], run)
    if not reference:
        raise ValueError(f"none of {[str(f) for f in folders]} has LoRA r={reference_rank} runs (on the default "
                         "targets) to pair with")
    rows: dict[str, dict[str, Any]] = {}
    for (folder, *_), by_seed in configs.items():
        seeds = sorted(set(by_seed) & set(reference))
        if not seeds:
            continue
        first = by_seed[seeds[0]]
        gaps = [100 * (by_seed[s][metric] - reference[s][metric]) for s in seeds]
        n = len(gaps)
        sd = statistics.stdev(gaps) if n > 1 else float("nan")
        se = sd / math.sqrt(n) if n > 1 else float("nan")
        half = student_t.ppf(0.975, n - 1) * se if n > 1 else float("nan")
        mean_gap = statistics.fmean(gaps)
        row = {
            "label": _config_label(first, folder), "method": first["method"], "folder": folder,
            "adapter_params": first["adapter_params"], "seeds": n,
            "mean": statistics.fmean(100 * by_seed[s][metric] for s in seeds),
            "val_loss": statistics.fmean(by_seed[s]["best_val_loss"] for s in seeds)
            if all(by_seed[s].get("best_val_loss") is not None for s in seeds) else float("nan"),
            "gap": mean_gap, "gap_se": se, "ci_low": mean_gap - half, "ci_high": mean_gap + half,
            "reference": _is_reference(first, reference_rank),
        }
        key = _signature(first, folder)
        old = rows.get(key)
        if old is None or row["seeds"] > old["seeds"]:
            rows[key] = row
    labels = [key[0] for key in rows]
    for row in rows.values():
        if labels.count(row["label"]) > 1 and not row["label"].endswith(f"[{row['folder']}]"):
            row["label"] += f" [{row['folder']}]"
    return sorted(rows.values(), key=lambda r: (r["adapter_params"] or 0, r["label"]))


def goal_status(row: dict[str, Any], reference_params: int, max_gap: float, min_ratio: float) -> str:
    """"met" (mean gap and parameter ratio inside the goal), "not met", or "over budget"."""
    if row["method"] == "head" or row["adapter_params"] * min_ratio > reference_params:
        return "over budget" if row["method"] != "head" else "no adapter"
    return "met" if row["gap"] >= -max_gap else "not met"


def _ratio_text(reference_params: int, params: int) -> str:
    if not params:
        return ""
    ratio = reference_params / params
    return f"{ratio:.1f}×" if ratio >= 1 else f"{1 / ratio:,.0f}× more"


def budget_table(rows: list[dict[str, Any]], max_gap: float = 0.5, min_ratio: float = 15.0,
                 metric_name: str = "test accuracy") -> str:
    reference_params = next(r["adapter_params"] for r in rows if r["reference"])
    table = []
    for r in rows:
        ci = "" if math.isnan(r["ci_low"]) else f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
        table.append({
            "configuration": r["label"], "adapter params": r["adapter_params"],
            "fewer than LoRA": _ratio_text(reference_params, r["adapter_params"]),
            "seeds": r["seeds"], "val loss (selects)": "" if math.isnan(r["val_loss"]) else f"{r['val_loss']:.3f}",
            f"{metric_name} %": f"{r['mean']:.2f}",
            "paired gap": "0 (reference)" if r["reference"] else f"{r['gap']:+.2f}",
            "SE": "" if r["reference"] or math.isnan(r["gap_se"]) else f"{r['gap_se']:.2f}",
            "95 % interval": "" if r["reference"] else ci,
            "goal": "" if r["reference"] else goal_status(r, reference_params, max_gap, min_ratio),
        })
    return markdown_table(table)


def plot_budget(rows: list[dict[str, Any]], out: str | Path, title: str = "", max_gap: float = 0.5,
                min_ratio: float = 15.0, metric_name: str = "test accuracy") -> Path:
    """A forest plot: one line per configuration (by adapter parameters), its mean paired gap to LoRA r=8 with
    the 95 % interval; the gaps the goal allows are shaded, and configurations over the parameter budget (or with
    no adapter) are grey."""
    from .plots import _pyplot

    plt = _pyplot()
    reference = next(r for r in rows if r["reference"])
    shown = [r for r in rows if not r["reference"]]
    ref_params = reference["adapter_params"]
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.48 * len(shown)), dpi=150)
    lows = [r["gap"] if math.isnan(r["ci_low"]) else r["ci_low"] for r in shown]
    highs = [r["gap"] if math.isnan(r["ci_high"]) else r["ci_high"] for r in shown]
    x_low, x_high = min([*lows, -max_gap]) - 0.6, max([*highs, 0.0]) + 0.6
    ax.axvspan(-max_gap, x_high, color="tab:green", alpha=0.12, zorder=0)
    ax.axvline(-max_gap, color="tab:green", ls="--", lw=1)
    ax.axvline(0, color="black", lw=0.8)
    labels = []
    for y, r in enumerate(shown):
        status = goal_status(r, ref_params, max_gap, min_ratio)
        in_budget = status in ("met", "not met")
        colour = ("tab:blue" if r["method"] == "tt" else "tab:brown") if in_budget else "tab:gray"
        marker = {"tt": "o", "lora": "D", "full": "*", "head": "v"}.get(r["method"], "s")
        xerr = None if math.isnan(r["ci_low"]) else [[r["gap"] - r["ci_low"]], [r["ci_high"] - r["gap"]]]
        ax.errorbar(r["gap"], y, xerr=xerr, fmt=marker, color=colour, mec="black", ms=9 if marker == "*" else 7,
                    capsize=3, zorder=3)
        ax.annotate(f"{r['gap']:+.2f}", (r["gap"], y), xytext=(0, 7), textcoords="offset points", ha="center",
                    fontsize=7)
        size = (f"{r['adapter_params']:,} params, {_ratio_text(ref_params, r['adapter_params'])} fewer"
                if r["adapter_params"] else "no adapter")
        size = size.replace("× more fewer", "× more")
        labels.append(f"{r['label']}\n{size}, {r['seeds']} seeds" + (f" ({status})" if status == "over budget" else ""))
    ax.set_yticks(range(len(shown)), labels, fontsize=7)
    ax.set_ylim(len(shown) - 0.5, -0.7)
    ax.set_xlim(x_low, x_high)
    ax.set_xlabel(f"{metric_name} − LoRA r={GOAL_LORA_RANK} ({ref_params:,} params), same seed: mean and 95 % "
                  "t-interval (points)", fontsize=8)
    ax.set_title((title + "\n" if title else "")
                 + f"green: within {max_gap:g} points of LoRA r={GOAL_LORA_RANK}\nblue (TT-LoRA) / brown (LoRA): "
                 f"within the {min_ratio:g}× parameter budget; grey: outside it", fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out


def write_budget(folders: list[str | Path], out_dir: str | Path, title: str = "", max_gap: float = 0.5,
                 min_ratio: float = 15.0, command: str | None = None) -> tuple[Path, Path]:
    """``budget.md`` (the table) and ``fig_budget.png`` (the figure) in ``out_dir``."""
    rows = paired_gaps(folders)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot_budget(rows, out_dir / "fig_budget.png", title=title, max_gap=max_gap, min_ratio=min_ratio)
    text = [f"# {title or 'Paired gaps to LoRA r=' + str(GOAL_LORA_RANK)}", "",
            f"Each configuration's test accuracy minus that of LoRA r={GOAL_LORA_RANK} on the same seed, over the "
            "seeds both ran; mean, standard error and 95 % t-interval. Goal: at most 1/"
            f"{min_ratio:g} of LoRA's adapter parameters and a mean gap of at least −{max_gap:g} points. "
            "The validation loss (mean of the best checkpoints) is what the protocol selects configurations by; "
            "the test columns are for reporting.", "",
            budget_table(rows, max_gap, min_ratio), "", "Folders: " + ", ".join(f"`{f}`" for f in folders), ""]
    if command:
        text += ["```", command, "```", ""]
    md = out_dir / "budget.md"
    md.write_text("\n".join(text))
    return md, png
