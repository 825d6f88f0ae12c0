"""The goal as a picture: each configuration's paired accuracy gap to LoRA r=8 against its adapter parameters.

Comparison folders (``compare --out``) that ran the same protocol and seeds are read together. Every
configuration (one set of run settings, from any of the folders) is paired with the LoRA r=8 run of the same seed
(same data order),
which removes most of the seed-to-seed variation both share; the figure shows the mean paired gap with its 95 %
t-interval. The goal region (at most ``1/min_ratio`` of LoRA's adapter parameters, within ``max_gap`` points) is
shaded, so a configuration meets the goal when its point lies inside it.

    python -m ttkernels.recipes budget results/minilm-tweets/tt-outer-wd results/minilm-tweets/lora-r1-value \\
        --out results/minilm-tweets/budget
"""

from __future__ import annotations

import json
import math
import statistics
from itertools import pairwise
from pathlib import Path
from typing import Any

from ..utils import logger
from .compare import GOAL_LORA_RANK, method_name, read_runs, run_settings, targets_suffix
from .finetune import TRAINING_FIELDS
from .tables import markdown_table


def _config_label(run: dict[str, Any]) -> str:
    if run["method"] != "tt":
        return method_name(run)
    label = f"TT-LoRA {run.get('shape')} rank {run.get('rank')}" + targets_suffix(run)
    if run.get("alpha") is not None:  # always shown: with init scale it sets how fast the update grows
        label += f", α {run['alpha']:g}"
    if run.get("init") not in (None, "zero"):
        label += f", init {run['init']}"
    if run.get("init_scale") not in (None, 1.0):
        label += f", init scale {run['init_scale']:g}"
    return label


def _differing_results(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Where two records of one seed and settings disagree, beyond rounding, on a test metric or the validation
    loss: "<field> <a> vs <b>" for each."""
    fields = ("test_accuracy", "test_f1", "test_mcc", "best_val_loss")

    def show(value: float | None) -> str:
        return "missing" if value is None else f"{value:.6g}"

    return [f"{f} {show(a.get(f))} vs {show(b.get(f))}" for f in fields
            if not math.isclose(a.get(f) or 0.0, b.get(f) or 0.0, rel_tol=1e-6, abs_tol=1e-9)]


def _key(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True)


def _is_reference(run: dict[str, Any], rank: int) -> bool:
    return run["method"] == "lora" and run.get("rank") == rank and not run.get("targets")


def _folder_names(folders: list[Path]) -> dict[Path, str]:
    """Folders by their last component, or by the whole path where two share it."""
    names = [f.name for f in folders]
    return {f: f.name if names.count(f.name) == 1 else str(f) for f in folders}


PROTOCOL_FIELDS = ("model", "data", "task", "train_size", "val_size", "test_size", "max_steps")


def protocol_of(run: dict[str, Any]) -> tuple[Any, ...]:
    """What must be equal for two runs' accuracies to be paired: model, data set, task, split sizes and the
    training length in optimizer steps (which the epochs and batch size set). Missing fields are None. Runs of
    one protocol must also agree on the :data:`TRAINING_FIELDS` they record (checked when folders are read)."""
    return tuple(run.get(f) for f in PROTOCOL_FIELDS)


def protocol_label(protocol: tuple[Any, ...]) -> str:
    fields = dict(zip(PROTOCOL_FIELDS, protocol, strict=True))
    if all(v is None for v in protocol):
        return "unrecorded protocol"
    sizes = " / ".join(f"{name} {fields[f'{name}_size']}" for name in ("train", "val", "test"))
    task = f" ({fields['task']})" if fields["task"] not in (None, "seq-cls") else ""
    return f"{fields['model']}, {fields['data']}{task}, {sizes}, at most {fields['max_steps']} steps"


Source = tuple[str, Path, list[dict[str, Any]]]  # display name, folder, its runs


def _read_folders(folders: list[str | Path]) -> list[Source]:
    """(display name, folder, runs) per folder; FileNotFoundError for a folder without runs."""
    paths = [Path(f) for f in folders]
    names = _folder_names(paths)
    sources = []
    for folder in paths:
        runs = read_runs(folder / "runs.jsonl")
        if not runs:
            raise FileNotFoundError(f"{folder / 'runs.jsonl'} is missing or empty: not a compare --out folder")
        sources.append((names[folder], folder, runs))
    return sources


def _by_protocol(sources: list[Source]) -> dict[tuple[Any, ...], list[Source]]:
    """The sources' runs split by :func:`protocol_of`: protocol -> (name, folder, its runs of that protocol) for
    each source that has any, in the order first seen."""
    by_protocol: dict[tuple[Any, ...], list[Source]] = {}
    for name, folder, runs in sources:
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for run in runs:
            groups.setdefault(protocol_of(run), []).append(run)
        for protocol, group in groups.items():
            by_protocol.setdefault(protocol, []).append((name, folder, group))
    for protocol, group in by_protocol.items():
        _check_training(protocol, group)
    return by_protocol


def _check_training(protocol: tuple[Any, ...], sources: list[Source]) -> None:
    """ValueError when runs of one protocol recorded different :data:`TRAINING_FIELDS` (e.g. max length) for
    the same steps; records written before those fields were kept are not compared."""
    for field in TRAINING_FIELDS:
        seen: dict[Any, list[str]] = {}
        for name, _, runs in sources:
            for value in dict.fromkeys(run[field] for run in runs if field in run):
                seen.setdefault(value, []).append(name)
        if len(seen) > 1:
            raise ValueError(f"{protocol_label(protocol)}: runs with different {field} ("
                             + "; ".join(f"{value!r}: {names}" for value, names in seen.items())
                             + "): accuracies pair only within one protocol")


def paired_gaps(folders: list[str | Path], reference_rank: int = GOAL_LORA_RANK,
                metric: str = "test_accuracy") -> list[dict[str, Any]]:
    """One row per configuration: adapter parameters, seeds paired with LoRA r=``reference_rank`` (on the
    default targets), mean ``metric`` (%) and validation loss, and the mean paired gap to the reference with its
    standard error and 95 % t-interval.

    A configuration is its :func:`~ttkernels.recipes.compare.run_settings`; its seeds are gathered from every
    folder (a seed logged twice, e.g. a baseline one folder copied from another, counts once; a warning names a
    seed whose two records disagree). Configurations that share a label get their hyperparameters added to it.
    Raises FileNotFoundError for a folder without runs, ValueError without reference runs, with references of
    different settings, or with runs of more than one protocol (:func:`protocol_of`; :func:`gap_trend` compares
    protocols)."""
    sources = _read_folders(folders)
    protocols = _by_protocol(sources)
    if len(protocols) > 1:
        raise ValueError(f"the folders hold runs of {len(protocols)} protocols ("
                         + "; ".join(f"{protocol_label(p)}: {[name for name, _, _ in group]}"
                                     for p, group in protocols.items())
                         + "): accuracies pair only within one; `trend` compares the gap across protocols")
    return _paired_rows(sources, reference_rank, metric)


def _paired_rows(sources: list[Source], reference_rank: int,
                 metric: str) -> list[dict[str, Any]]:
    from scipy.stats import t as student_t

    configs: dict[str, dict[str, Any]] = {}
    for name, folder, runs in sources:
        for run in runs:
            settings = run_settings(run)
            config = configs.setdefault(_key(settings), {"settings": settings, "runs": {}, "folders": []})
            kept = config["runs"].setdefault(run["seed"], run)
            differ = _differing_results(kept, run) if kept is not run else []
            if differ:
                logger.warning("%s: seed %s is logged twice with the same settings but different results (%s); the "
                               "first copy read is kept", folder, run["seed"], "; ".join(differ))
            if name not in config["folders"]:
                config["folders"].append(name)
    references = [c for c in configs.values() if _is_reference(next(iter(c["runs"].values())), reference_rank)]
    if not references:
        raise ValueError(f"none of {[str(folder) for _, folder, _ in sources]} has LoRA r={reference_rank} runs (on "
                         "the default targets) to pair with")
    if len(references) > 1:
        raise ValueError(f"the folders hold LoRA r={reference_rank} runs of {len(references)} different settings ("
                         + "; ".join(f"{c['folders']}: lr {c['settings']['learning_rate']}, alpha "
                                     f"{c['settings']['alpha']}, weight decay {c['settings']['weight_decay']}"
                                     for c in references)
                         + "): pairing needs one protocol, so pass the folders of one")
    reference = references[0]["runs"]
    rows = []
    for config in configs.values():
        by_seed = config["runs"]
        seeds = sorted(set(by_seed) & set(reference))
        if not seeds:
            continue
        first = by_seed[seeds[0]]
        gaps = [100 * (by_seed[s][metric] - reference[s][metric]) for s in seeds]
        n = len(gaps)
        se = statistics.stdev(gaps) / math.sqrt(n) if n > 1 else float("nan")
        half = student_t.ppf(0.975, n - 1) * se if n > 1 else float("nan")
        mean_gap = statistics.fmean(gaps)
        rows.append({
            "label": _config_label(first), "method": first["method"], "folders": config["folders"],
            "settings": config["settings"], "adapter_params": first["adapter_params"], "seeds": n,
            "mean": statistics.fmean(100 * by_seed[s][metric] for s in seeds),
            "reference_mean": statistics.fmean(100 * reference[s][metric] for s in seeds),  # the same seeds
            "val_loss": statistics.fmean(by_seed[s]["best_val_loss"] for s in seeds)
            if all(by_seed[s].get("best_val_loss") is not None for s in seeds) else float("nan"),
            "gap": mean_gap, "gap_se": se, "ci_low": mean_gap - half, "ci_high": mean_gap + half,
            "reference": config is references[0],
        })
    labels = [r["label"] for r in rows]
    for row in rows:
        if labels.count(row["label"]) > 1:
            st = row["settings"]
            alpha = "" if row["method"] == "tt" else f"α {st['alpha'] if st['alpha'] is not None else '-'}, "
            row["label"] += (f" (lr {st['learning_rate']:g}, {alpha}wd {st['weight_decay']:g}"
                             + (f", dropout {st['dropout']:g}" if st["dropout"] else "") + ")")
    for row in rows:
        row["config_label"] = row["label"]
        row["label"] += f" [{', '.join(row['folders'])}]" if row["method"] == "tt" else ""
    return sorted(rows, key=lambda r: (r["adapter_params"] or 0, r["label"]))


def goal_status(row: dict[str, Any], reference_params: int, max_gap: float, min_ratio: float) -> str:
    """"met" (mean gap and parameter ratio inside the goal, over at least two seeds), "not met", "over budget",
    "no adapter", or "one seed" (too few to say)."""
    if row["method"] == "head" or not row["adapter_params"]:
        return "no adapter"
    if row["adapter_params"] * min_ratio > reference_params:
        return "over budget"
    if row["seeds"] < 2:
        return "one seed"
    return "met" if row["gap"] >= -max_gap else "not met"


def _ratio_text(reference_params: int, params: int) -> str:
    if not params:
        return ""
    ratio = reference_params / params
    return f"{ratio:.1f}×" if ratio >= 1 else f"{1 / ratio:,.0f}× more"


def _interval_text(row: dict[str, Any]) -> str:
    """The 95 % interval as "[low, high]", or "" with one seed."""
    return "" if math.isnan(row["ci_low"]) else f"[{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"


def budget_table(rows: list[dict[str, Any]], max_gap: float = 0.5, min_ratio: float = 15.0,
                 metric_name: str = "test accuracy") -> str:
    reference_params = next(r["adapter_params"] for r in rows if r["reference"])
    table = []
    for r in rows:
        table.append({
            "configuration": r["label"], "adapter params": r["adapter_params"],
            "fewer than LoRA": _ratio_text(reference_params, r["adapter_params"]),
            "seeds": r["seeds"], "val loss (selects)": "" if math.isnan(r["val_loss"]) else f"{r['val_loss']:.3f}",
            f"{metric_name} %": f"{r['mean']:.2f}",
            "paired gap": "0 (reference)" if r["reference"] else f"{r['gap']:+.2f}",
            "SE": "" if r["reference"] or math.isnan(r["gap_se"]) else f"{r['gap_se']:.2f}",
            "95 % interval": "" if r["reference"] else _interval_text(r),
            "goal": "" if r["reference"] else goal_status(r, reference_params, max_gap, min_ratio),
        })
    return markdown_table(table)


def _save_figure(plt: Any, fig: Any, out: str | Path) -> Path:
    """Lay out, write ``out`` (its folder made as needed) and close the figure."""
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out


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
        in_budget = status in ("met", "not met", "one seed")
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
    return _save_figure(plt, fig, out)


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


def gap_trend(folders: list[str | Path], methods: tuple[str, ...] = ("tt",), reference_rank: int = GOAL_LORA_RANK,
              metric: str = "test_accuracy") -> list[dict[str, Any]]:
    """The paired gap to LoRA r=``reference_rank`` per protocol: runs from all ``folders`` are grouped by
    :func:`protocol_of` (e.g. one group per training-set size), and :func:`paired_gaps`' pairing runs within each
    group. One row per (protocol, configuration) of the given ``methods``, with the protocol's fields added
    (``train_size`` etc.), its label, and ``series``: the configuration and every protocol field but the training
    size, so that one configuration on one task at several training sizes forms one series. Protocols without
    reference runs are skipped with a warning; references of different settings within one protocol raise
    ValueError, as in :func:`paired_gaps`."""
    rows = []
    for protocol, sources in _by_protocol(_read_folders(folders)).items():
        if not any(_is_reference(run, reference_rank) for _, _, runs in sources for run in runs):
            logger.warning("trend: %s skipped: %s have no LoRA r=%d runs (on the default targets) to pair with",
                           protocol_label(protocol), [name for name, _, _ in sources], reference_rank)
            continue
        paired = _paired_rows(sources, reference_rank, metric)
        reference = next(r for r in paired if r["reference"])
        fields = dict(zip(PROTOCOL_FIELDS, protocol, strict=True))
        task = {k: v for k, v in fields.items() if k not in ("train_size", "max_steps")}
        for row in paired:
            if row["reference"] or row["method"] not in methods:
                continue
            rows.append({**row, **fields, "protocol": protocol_label(protocol),
                         "reference_params": reference["adapter_params"],
                         "series": (_key(task), _key(row["settings"]))})
    rows.sort(key=lambda r: (r["series"], r["train_size"] or 0))
    for a, b in pairwise(rows):
        if a["series"] == b["series"] and a["train_size"] == b["train_size"]:
            logger.warning("trend: %s at %s training examples has two protocols (%s; %s), e.g. other epochs: both "
                           "are drawn at the same size", a["config_label"], a["train_size"], a["protocol"],
                           b["protocol"])
    return rows


def trend_table(rows: list[dict[str, Any]], max_gap: float = 0.5, min_ratio: float = 15.0,
                metric_name: str = "test accuracy") -> str:
    table = [{
        "data": f"{r['model']}, {r['data']}", "configuration": r["config_label"], "train examples": r["train_size"],
        "seeds": r["seeds"], f"{metric_name} %": f"{r['mean']:.2f}", f"LoRA r={GOAL_LORA_RANK} %":
        f"{r['reference_mean']:.2f}", "paired gap": f"{r['gap']:+.2f}",
        "SE": "" if math.isnan(r["gap_se"]) else f"{r['gap_se']:.2f}",
        "95 % interval": _interval_text(r),
        "goal": goal_status(r, r["reference_params"], max_gap, min_ratio),
    } for r in rows]
    return markdown_table(table)


def plot_trend(rows: list[dict[str, Any]], out: str | Path, title: str = "", max_gap: float = 0.5,
               metric_name: str = "test accuracy") -> Path:
    """Paired gap to LoRA r=8 (mean and 95 % interval) against the number of training examples, one line per
    series (configuration and task); the gaps the goal allows are shaded."""
    from .plots import _pyplot

    plt = _pyplot()
    series: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault(r["series"], []).append(r)
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=150)
    sizes = sorted({r["train_size"] for r in rows if r["train_size"]})
    offsets = [1.0 + 0.025 * (i - (len(series) - 1) / 2) for i in range(len(series))]  # keep error bars apart
    for (_, points), offset in zip(series.items(), offsets, strict=True):
        xs = [p["train_size"] * offset for p in points]
        ys = [p["gap"] for p in points]
        yerr = [[0.0 if math.isnan(p["ci_low"]) else p["gap"] - p["ci_low"] for p in points],
                [0.0 if math.isnan(p["ci_high"]) else p["ci_high"] - p["gap"] for p in points]]
        first = points[0]
        label = f"{first['data']}: {first['config_label']} ({first['adapter_params']:,} params)"
        line = ax.errorbar(xs, ys, yerr=yerr, fmt="-o", capsize=3, label=label)
        for x, p in zip(xs, points, strict=True):
            ax.annotate(f"{p['gap']:+.2f} ({p['seeds']})", (x, p["gap"]), xytext=(7, 3), textcoords="offset points",
                        fontsize=7, color=line[0].get_color())
    low = min([r["ci_low"] if not math.isnan(r["ci_low"]) else r["gap"] for r in rows] + [-max_gap]) - 0.3
    high = max([r["ci_high"] if not math.isnan(r["ci_high"]) else r["gap"] for r in rows] + [0.0]) + 0.3
    ax.axhspan(-max_gap, high, color="tab:green", alpha=0.12, zorder=0)
    ax.axhline(-max_gap, color="tab:green", ls="--", lw=1)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylim(low, high)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{s:,}" for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training examples (log scale); in brackets: seeds")
    ax.set_ylabel(f"{metric_name} − LoRA r={GOAL_LORA_RANK}, same seed (points)")
    ax.set_title((title + "\n" if title else "") + f"mean paired gap and 95 % t-interval; green: within {max_gap:g} "
                 f"points of LoRA r={GOAL_LORA_RANK}", fontsize=9)
    # below the axes: inside, the legend covered the lower ends of long intervals
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), frameon=False)
    ax.grid(True, alpha=0.3)
    return _save_figure(plt, fig, out)


def write_trend(folders: list[str | Path], out_dir: str | Path, title: str = "", max_gap: float = 0.5,
                min_ratio: float = 15.0, methods: tuple[str, ...] = ("tt",),
                command: str | None = None) -> tuple[Path, Path]:
    """``trend.md`` (the table) and ``fig_trend.png`` (the figure) in ``out_dir``. ValueError when no protocol
    has both reference runs and runs of ``methods``."""
    rows = gap_trend(folders, methods=methods)
    if not rows:
        raise ValueError(f"no protocol in {[str(f) for f in folders]} has both LoRA r={GOAL_LORA_RANK} runs and runs "
                         f"of {list(methods)} to pair")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot_trend(rows, out_dir / "fig_trend.png", title=title, max_gap=max_gap)
    text = [f"# {title or 'Paired gap to LoRA r=' + str(GOAL_LORA_RANK) + ' by training-set size'}", "",
            f"Per protocol (model, data, split sizes, training length), each configuration's test accuracy minus "
            f"that of LoRA r={GOAL_LORA_RANK} on the same seed, over the seeds both ran: mean, standard error and "
            f"95 % t-interval. Goal: at most 1/{min_ratio:g} of LoRA's adapter parameters and a mean gap of at "
            f"least −{max_gap:g} points.", "", trend_table(rows, max_gap, min_ratio), "",
            "Protocols: " + "; ".join(sorted({r["protocol"] for r in rows})), "",
            "Folders: " + ", ".join(f"`{f}`" for f in folders), ""]
    if command:
        text += ["```", command, "```", ""]
    md = out_dir / "trend.md"
    md.write_text("\n".join(text))
    return md, png
