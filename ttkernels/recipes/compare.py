"""Compare methods (TT-LoRA, PEFT LoRA, full fine-tuning, head only) over seeds on one task.

Every run appends its record to ``runs.jsonl`` as soon as it ends (a re-run skips (method, seed) pairs that
are there, so an interrupted comparison resumes; the log is re-read before each run, so invocations with
different ``--methods`` or ``--seeds`` can share one folder side by side), and the summary ``compare.csv`` /
``compare.md`` is rewritten after each run: per method the parameter counts, the adapter size at 16 bit, test
accuracy and macro-F1 as mean ± std over seeds, and the wall time.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .data import TextData
from .finetune import FinetuneConfig, finetune, load_task_data, method_settings, training_settings
from .tables import markdown_table, write_csv

METHOD_NAMES = {"tt": "TT-LoRA (ttkernels)", "lora": "LoRA (PEFT)", "full": "Full fine-tuning",
                "head": "Head only"}
GOAL_LORA_RANK = 8  # the stated goal compares TT-LoRA with LoRA r=8


def method_name(run: dict[str, Any]) -> str:
    """A run's method as a table shows it: LoRA with its rank, and the targets when they are not the default."""
    method = run["method"]
    name = f"LoRA r={run['rank']} (PEFT)" if method == "lora" and run.get("rank") else METHOD_NAMES.get(method, method)
    return name + targets_suffix(run)


def targets_suffix(run: dict[str, Any]) -> str:
    """" on query, value" for a run with explicit targets; "" for the default targets."""
    return f" on {', '.join(run['targets'])}" if run.get("targets") else ""


def run_settings(run: dict[str, Any]) -> dict[str, Any]:
    """What makes runs one configuration, from a run record (fields that older records lack take the value they
    had then: no weight decay, no dropout, zero init at scale 1, the default targets)."""
    method = run["method"]
    return {
        "method": method, "learning_rate": run.get("learning_rate"), "head_lr": run.get("head_lr"),
        "weight_decay": float(run.get("weight_decay") or 0.0), "rank": run.get("rank"), "alpha": run.get("alpha"),
        "shape": run.get("shape"), "targets": list(run["targets"]) if run.get("targets") else None,
        "init": (run.get("init") or "zero") if method == "tt" else None, "dropout": float(run.get("dropout") or 0.0),
        "init_scale": float(run.get("init_scale") or 1.0) if method == "tt" else None,
    }


def config_settings(cfg: FinetuneConfig) -> dict[str, Any]:
    """:func:`run_settings` of the record ``cfg`` will write, without the resolved TT shape (None)."""
    return run_settings({"method": cfg.method, **method_settings(cfg)})


def settings_mismatch(run: dict[str, Any], cfg: FinetuneConfig) -> list[str]:
    """How a logged run differs from what ``cfg`` would run (the TT shape is compared only by its label)."""
    have, want = run_settings(run), config_settings(cfg)
    # normalised above, so old records compare too
    always = ("weight_decay", "dropout", "init", "init_scale", "targets")
    return [f"{k} {have[k]!r} (asked: {want[k]!r})" for k in want
            if k != "shape" and (k in run or k in always) and have[k] != want[k]]


def expected_protocol(base: FinetuneConfig, data: TextData) -> dict[str, Any]:
    """The protocol fields a run of ``base`` on ``data`` (its splits already cut to size) records."""
    return {"model": base.model, "data": base.data, "task": base.task, "train_size": len(data.train),
            "val_size": len(data.val), "test_size": len(data.test), **training_settings(base)}


def protocol_mismatch(run: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """How a logged run's protocol differs from ``expected`` (a field the record lacks is not compared)."""
    return [f"{k} {run[k]!r} (asked: {v!r})" for k, v in expected.items() if k in run and run[k] != v]


def read_runs(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: list[dict[str, Any]], methods: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per method: counts, size, mean ± std of the test metrics (in %), mean times."""
    methods = methods or list(dict.fromkeys(r["method"] for r in runs))
    rows = []
    for m in methods:
        rs = [r for r in runs if r["method"] == m]
        if not rs:
            continue
        acc = _mean_std([100 * r["test_accuracy"] for r in rs])
        f1 = _mean_std([100 * r["test_f1"] for r in rs])
        mcc = _mean_std([100 * r["test_mcc"] for r in rs])
        val = _mean_std([100 * r["val_accuracy"] for r in rs])
        # losses: the mean where recorded (the test loss is what the selection by validation loss aims at)
        val_loss = _mean_std([r["best_val_loss"] for r in rs if r.get("best_val_loss") is not None])[0]
        test_loss = _mean_std([r["test_loss"] for r in rs if r.get("test_loss") is not None])[0]
        rows.append({
            "method": m, "name": method_name(rs[0]), "seeds": len(rs),
            "adapter_params": rs[0]["adapter_params"], "head_params": rs[0]["head_params"],
            "trainable_params": rs[0]["trainable_params"],
            "adapter_kb_fp16": rs[0]["adapter_bytes_fp16"] / 1024,
            "test_accuracy_mean": acc[0], "test_accuracy_std": acc[1],
            "test_f1_mean": f1[0], "test_f1_std": f1[1], "test_mcc_mean": mcc[0], "test_mcc_std": mcc[1],
            "val_accuracy_mean": val[0], "val_accuracy_std": val[1],
            "test_accuracy": f"{acc[0]:.2f} ± {acc[1]:.2f}", "test_f1": f"{f1[0]:.2f} ± {f1[1]:.2f}",
            "test_mcc": f"{mcc[0]:.2f} ± {mcc[1]:.2f}",
            "val_loss_mean": val_loss, "test_loss_mean": test_loss,
            "val_loss": "" if math.isnan(val_loss) else f"{val_loss:.4f}",
            "test_loss": "" if math.isnan(test_loss) else f"{test_loss:.4f}",
            "learning_rate": rs[0]["learning_rate"], "rank": rs[0].get("rank"), "alpha": rs[0].get("alpha"),
            "shape": rs[0].get("shape"), "weight_decay": rs[0].get("weight_decay"),
            "dropout": rs[0].get("dropout"), "init": rs[0].get("init"), "init_scale": rs[0].get("init_scale"),
            "targets": rs[0].get("targets"),
            "steps_mean": statistics.fmean(r["steps"] for r in rs),
            "wall_time_s_mean": statistics.fmean(r["wall_time_s"] for r in rs),
            "train_time_s_mean": statistics.fmean(r["train_time_s"] for r in rs),
        })
    return rows


def goal_check(rows: list[dict[str, Any]], max_gap: float = 0.5, min_ratio: float = 15.0) -> str | None:
    """The stated goal: TT-LoRA within ``max_gap`` accuracy points of LoRA with >= ``min_ratio``x fewer
    adapter parameters. Returns a sentence, or None without both methods."""
    by = {r["method"]: r for r in rows}
    if "tt" not in by or "lora" not in by:
        return None
    tt, lora = by["tt"], by["lora"]
    gap = tt["test_accuracy_mean"] - lora["test_accuracy_mean"]
    f1_gap = tt["test_f1_mean"] - lora["test_f1_mean"]
    ratio = lora["adapter_params"] / max(tt["adapter_params"], 1)
    met = gap >= -max_gap and ratio >= min_ratio
    rank = lora.get("rank") or GOAL_LORA_RANK  # records from before the rank was kept were all r=8
    if rank == GOAL_LORA_RANK and not lora.get("targets"):
        verdict = (f"Goal (within {max_gap} points of LoRA r={GOAL_LORA_RANK}, ≥ {min_ratio:g}× fewer): "
                   + ("MET." if met else "NOT MET."))
    else:
        verdict = (f"The goal is stated against LoRA r={GOAL_LORA_RANK} on the default targets; this is "
                   f"{lora['name']}, so it is not judged here.")
    return (
        f"TT-LoRA − LoRA r={rank}: {gap:+.2f} accuracy points, {f1_gap:+.2f} macro-F1 points (test, mean of "
        f"{tt['seeds']} / {lora['seeds']} seeds); LoRA has {ratio:.1f}× the adapter parameters of TT-LoRA "
        f"({lora['adapter_params']:,} vs {tt['adapter_params']:,}, heads excluded). {verdict}"
    )


SUMMARY_COLUMNS = ["name", "seeds", "adapter_params", "trainable_params", "adapter_kb_fp16", "test_accuracy",
                   "test_f1", "test_mcc", "val_loss", "test_loss", "wall_time_s_mean", "steps_mean", "learning_rate"]
SUMMARY_HEADERS = {
    "name": "method", "adapter_params": "adapter params (excl. head)", "trainable_params": "trainable params",
    "adapter_kb_fp16": "saved KB (16-bit, incl. head)", "test_accuracy": "test accuracy %",
    "test_f1": "test macro-F1 %", "test_mcc": "test MCC ×100", "val_loss": "val loss (selects)",
    "test_loss": "test loss", "wall_time_s_mean": "wall time / run (s)",
    "steps_mean": "steps", "learning_rate": "lr",
}


def machine_info() -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def training_text(cfg: FinetuneConfig) -> str:
    """One sentence with ``cfg``'s training protocol (:data:`~ttkernels.recipes.finetune.TRAINING_FIELDS`)."""
    length = f"at most {cfg.epochs:g} epochs" + (f" (max_steps {cfg.max_steps})" if cfg.max_steps > 0 else "")
    evals = f"every {cfg.eval_steps} steps" if cfg.eval_steps else f"{cfg.evals_per_epoch} per epoch"
    grouped = ", batches grouped by length" if cfg.group_by_length else ""
    return (f"Training: max length {cfg.max_length} tokens, batch {cfg.batch_size}, {length}, evaluation {evals}, "
            f"warmup {cfg.warmup_ratio:g} of the steps{grouped}.")


def write_summary(out: Path, runs: list[dict[str, Any]], methods: list[str], base: FinetuneConfig,
                  command: str | None, total_s: float | None) -> list[dict[str, Any]]:
    rows = summarize(runs, methods)
    write_csv(out / "compare.csv", rows)
    first = runs[0] if runs else {}
    lines = [
        f"# {base.model} on {base.data} ({base.task})", "",
        f"Split sizes: train {first.get('train_size')} / val {first.get('val_size')} / test "
        f"{first.get('test_size')} (fixed splits, see ttkernels/recipes/data.py). Metrics on the test split; "
        "mean ± std over seeds. Each run: early stopping on validation loss (patience "
        f"{base.patience} evaluations), best model by validation loss. {training_text(base)}", "",
        markdown_table(rows, SUMMARY_COLUMNS, SUMMARY_HEADERS), "",
    ]
    goal = goal_check(rows)
    if goal:
        lines += [goal, ""]
    tt = next((r for r in rows if r["method"] == "tt"), None)
    if tt:
        wd = f", weight decay {tt['weight_decay']:g}" if tt.get("weight_decay") else ""
        wd += f", dropout {tt['dropout']:g}" if tt.get("dropout") else ""
        wd += f", init {tt['init']}" if tt.get("init") not in (None, "zero") else ""
        wd += f", init scale {tt['init_scale']:g}" if tt.get("init_scale") not in (None, 1.0) else ""
        lines += [f"TT-LoRA: shape {tt['shape']}, rank {tt['rank']}, alpha {tt['alpha']}, "
                  f"lr {tt['learning_rate']}{wd}.", ""]
    lines += ["## Runs", "", markdown_table(runs, RUN_COLUMNS), ""]
    info = machine_info()
    lines += ["## How it was made", ""]
    if command:
        lines += ["```", command, "```", ""]
    threads = sorted({r.get("torch_threads") for r in runs if r.get("torch_threads")})
    lines += [f"Machine: {info['platform']}, {info['cpu_count']} CPUs (shared with other jobs), "
              f"torch {info['torch']}, torch threads per run: {threads or info['torch_threads']}, "
              f"GPU: {info['cuda'] or 'none'}."]
    if runs:
        lines += [f"Sum of the per-run wall times (load, train, evaluate, save) of the {len(runs)} runs: "
                  f"{sum(r['wall_time_s'] for r in runs) / 60:.1f} min."]
    if total_s is not None:
        lines += [f"Wall time of the last invocation: {total_s / 60:.1f} min."]
    (out / "compare.md").write_text("\n".join(lines) + "\n")
    return rows


RUN_COLUMNS = ["method", "seed", "learning_rate", "adapter_params", "test_accuracy", "test_f1", "test_mcc", "test_loss",
               "val_accuracy", "best_val_loss", "best_step", "steps", "train_time_s", "wall_time_s"]


def run_compare(base: FinetuneConfig, methods: list[str], seeds: list[int], out_dir: str | Path,
                learning_rates: dict[str, float] | None = None, command: str | None = None,
                runs_dir: str | Path = "runs/compare",
                weight_decays: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Run every (seed, method) not yet in ``out_dir/runs.jsonl``; return the summary rows.

    ``learning_rates`` / ``weight_decays`` map a method to its own value (others: the method's default lr,
    ``base.weight_decay``)."""
    out = Path(out_dir)

    def config(method: str, seed: int) -> FinetuneConfig:
        lr = (learning_rates or {}).get(method)
        wd = (weight_decays or {}).get(method, base.weight_decay)
        return replace(base, method=method, seed=seed, learning_rate=lr, weight_decay=wd, evaluate_before=False,
                       head_lr=None if method == "head" else base.head_lr,  # head only: its lr is the head's
                       output_dir=str(Path(runs_dir) / out.name / f"{method}-seed{seed}"))

    # every run's settings are checked (FinetuneConfig) before the first one trains or anything is written
    configs = {(seed, method): config(method, seed) for seed in seeds for method in methods}
    out.mkdir(parents=True, exist_ok=True)
    log = out / "runs.jsonl"
    data = load_task_data(base)
    protocol = expected_protocol(base, data)
    start = time.perf_counter()
    ran = 0
    for seed in seeds:
        for method in methods:
            cfg = configs[seed, method]
            runs = read_runs(log)  # again before each run: another invocation may have logged this pair meanwhile
            for logged in runs:
                if diff := protocol_mismatch(logged, protocol):
                    raise SystemExit(f"[compare] {log} already has runs of another protocol: {'; '.join(diff)}. "
                                     "One folder holds one protocol (its runs are paired by seed and a logged "
                                     "(method, seed) is skipped): use another --out.")
            for logged in (r for r in runs if r["method"] == method):
                if diff := settings_mismatch(logged, cfg):
                    raise SystemExit(f"[compare] {log} already has {method} runs with other settings: "
                                     f"{'; '.join(diff)}. One folder holds one configuration per method (its "
                                     "table and the skip-what-is-there resume depend on it): use another --out.")
            if any(r["method"] == method and r["seed"] == seed for r in runs):
                print(f"[compare] {method} seed {seed}: already in {log}, skipped")
                continue
            record = finetune(cfg, data=data)
            ran += 1
            with open(log, "a") as f:
                f.write(json.dumps(record) + "\n")
            write_summary(out, read_runs(log), methods, base, command, time.perf_counter() - start)
    runs = read_runs(log)
    rows = write_summary(out, runs, methods, base, command, time.perf_counter() - start if ran else None)
    print((out / "compare.md").read_text())
    return rows
