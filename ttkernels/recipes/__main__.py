"""``python -m ttkernels.recipes {finetune,compare,search,plot,budget,trend,capture}``: the recipes, command line.

    python -m ttkernels.recipes finetune --method tt --model minilm --data tweets
    python -m ttkernels.recipes compare --methods tt lora full head --seeds 0 1 2 --out results/minilm-tweets
    python -m ttkernels.recipes search --trials 24 --out results/minilm-tweets/search
    python -m ttkernels.recipes plot results/minilm-tweets
    python -m ttkernels.recipes budget results/minilm-tweets/tt-outer-wd results/minilm-tweets/lora-r1-value --out DIR
    python -m ttkernels.recipes trend results/minilm-tweets-binary/{seeds0-9,train4000} --out DIR
    python -m ttkernels.recipes capture runs/lora/adapter --shapes outer 64x36x64 --ranks 2,4,2 2
"""

from __future__ import annotations

import argparse
import shlex
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from ..errors import SettingError, TTShapeError
from ..utils import parse_rank, parse_rank_choice
from .finetune import METHODS, FinetuneConfig
from .search import SEARCH_BACKENDS

_HELP = {
    "method": "tt | lora | full | head",
    "model": "minilm | smollm2 | tiny-bert",
    "data": "tweets | tweets-binary | drugreview | synthetic",
    "task": "seq-cls | causal-lm",
    "shape": "TT shape: 'auto' (default), 'auto:<max_mode>', 'outer[:<max_mode>]' (end-heavy, like the paper's), "
             "or mode sizes like 64x6x6x64",
    "rank": "TT rank: one int for every bond, the d-1 inner ranks like 2,4,2, or r/R like 2/4 (R at the in/out bond)",
    "alpha": "TT alpha (scale of ΔW)",
    "init": "TT init: zero | gaussian | orthogonal",
    "init_scale": "multiplies the initial TT cores; < 1 trains the non-zero cores faster under Adam (scale alpha "
                  "by 1/init_scale^(d-1) to keep the update's initial growth)",
    "learning_rate": "learning rate (default: per method, see DEFAULT_LR)",
    "targets": "module-name suffixes to adapt (default: the model type's, e.g. query value)",
    "train_size": "training examples (first of the fixed split; 'all' for all)",
}


def _parse_optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "all") else int(text)


def add_config_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per FinetuneConfig field (defaults from the dataclass)."""
    hints = typing.get_type_hints(FinetuneConfig)
    for f in fields(FinetuneConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        hint = str(hints[f.name])
        help_text = _HELP.get(f.name, "") + f" (default: {default})"
        if hint == "<class 'bool'>":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif f.name == "targets":
            parser.add_argument(flag, nargs="+", default=None, help=help_text)
        elif f.name == "rank":
            parser.add_argument(flag, type=parse_rank, default=default, help=help_text)
        elif "int | None" in hint:
            parser.add_argument(flag, type=_parse_optional_int, default=default, help=help_text)
        elif "float | None" in hint:
            parser.add_argument(flag, type=float, default=default, help=help_text)
        elif hint in ("<class 'int'>", "<class 'float'>"):
            parser.add_argument(flag, type=int if "int" in hint else float, default=default, help=help_text)
        else:
            parser.add_argument(flag, type=str, default=default, help=help_text)


def config_from_args(args: argparse.Namespace, **overrides: Any) -> FinetuneConfig:
    values = {f.name: getattr(args, f.name) for f in fields(FinetuneConfig) if hasattr(args, f.name)}
    if values.get("shape") in ("auto", "none", "None"):
        values["shape"] = None
    values.update(overrides)
    return FinetuneConfig(**values)


def _method_map(items: list[str] | None) -> dict[str, float]:
    """``["tt=1e-2", "lora=2e-3"]`` -> {"tt": 0.01, "lora": 0.002}; a clear error for anything else."""
    out = {}
    for item in items or []:
        method, _, value = item.partition("=")
        try:
            if method not in METHODS:
                raise ValueError(method)
            out[method] = float(value)
        except ValueError:
            raise SystemExit(f"expected METHOD=VALUE with METHOD in {', '.join(METHODS)}, got {item!r}") from None
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "python -m ttkernels.recipes " + shlex.join(argv)
    parser = argparse.ArgumentParser(prog="python -m ttkernels.recipes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p_ft = sub.add_parser("finetune", help="one fine-tuning run (prints and saves result.json + the adapter)")
    add_config_arguments(p_ft)

    p_cmp = sub.add_parser("compare", help="methods x seeds, summary table (CSV + markdown)")
    add_config_arguments(p_cmp, skip=("method", "seed", "learning_rate", "output_dir"))
    p_cmp.add_argument("--methods", nargs="+", default=["tt", "lora", "full", "head"])
    p_cmp.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p_cmp.add_argument("--lr", nargs="*", metavar="METHOD=LR", help="learning rates, e.g. tt=5e-3 lora=1e-3")
    p_cmp.add_argument("--wd", nargs="*", metavar="METHOD=WD",
                       help="per-method weight decay, e.g. tt=0.1 (others: --weight-decay)")
    p_cmp.add_argument("--out", required=True, help="results folder (runs.jsonl, compare.csv, compare.md)")

    p_s = sub.add_parser("search", help="HyperBand search over TT shape, rank, alpha and learning rate")
    add_config_arguments(p_s, skip=("method", "learning_rate"))
    p_s.add_argument("--trials", type=int, default=20)
    p_s.add_argument("--backend", choices=SEARCH_BACKENDS, default="optuna")
    p_s.add_argument("--pruner", choices=["hyperband", "median", "none"], default="hyperband")
    p_s.add_argument("--shapes", nargs="+",
                     help="shape specs (default: auto:<k> and outer:<k> for several k + the paper's shapes that fit)")
    p_s.add_argument("--ranks", nargs="+", type=parse_rank_choice, help="ints, or r/R boundary ranks like 2/4")
    p_s.add_argument("--alphas", nargs="+", type=float)
    p_s.add_argument("--lrs", nargs="+", type=float)
    p_s.add_argument("--weight-decays", nargs="+", type=float,
                     help="weight decays to search, e.g. 0 0.1 (default: no axis, --weight-decay for every trial)")
    p_s.add_argument("--init-scales", nargs="+", type=float,
                     help="TT init scales to search, e.g. 1 0.2 (default: no axis, --init-scale for every trial; "
                          "alpha is used as given)")
    p_s.add_argument("--sampler-seed", type=int, default=0)
    p_s.add_argument("--max-adapter-params", type=int, default=None,
                     help="also report the best trial with at most this many adapter parameters")
    p_s.add_argument("--out", required=True, help="folder for trials.csv, trials.md, best.json")

    p_plot = sub.add_parser("plot", help="PNG figures (paper Fig. 4 and 5 style) from a results folder")
    p_plot.add_argument("folder")
    p_plot.add_argument("--title", default="")

    p_bud = sub.add_parser("budget", help="paired accuracy gap to LoRA r=8 vs adapter parameters, with the goal "
                           "region (budget.md, fig_budget.png) from comparison folders of one protocol")
    p_bud.add_argument("folders", nargs="+", help="compare --out folders (runs.jsonl); one needs LoRA r=8 runs")
    p_bud.add_argument("--out", required=True, help="folder for budget.md and fig_budget.png")
    p_bud.add_argument("--title", default="")
    p_bud.add_argument("--max-gap", type=float, default=0.5, help="accuracy points below LoRA r=8 the goal allows")
    p_bud.add_argument("--min-ratio", type=float, default=15.0, help="how many times fewer adapter parameters")

    p_tr = sub.add_parser("trend", help="paired accuracy gap to LoRA r=8 against the training-set size (trend.md, "
                          "fig_trend.png) from comparison folders of one or more protocols")
    p_tr.add_argument("folders", nargs="+", help="compare --out folders (runs.jsonl), e.g. one per training size")
    p_tr.add_argument("--out", required=True, help="folder for trend.md and fig_trend.png")
    p_tr.add_argument("--title", default="")
    p_tr.add_argument("--methods", nargs="+", default=["tt"], choices=["tt", "lora", "full", "head"],
                      help="which methods' configurations to show (LoRA r=8 is the reference)")
    p_tr.add_argument("--max-gap", type=float, default=0.5, help="accuracy points below LoRA r=8 the goal allows")
    p_tr.add_argument("--min-ratio", type=float, default=15.0, help="how many times fewer adapter parameters")

    p_cap = sub.add_parser("capture", help="how much of a trained PEFT LoRA update TT shapes/ranks can hold (TT-SVD)")
    p_cap.add_argument("adapter", help="PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors)")
    p_cap.add_argument("--shapes", nargs="+", default=["outer", "auto:6"],
                       help="shape specs: outer[:k], auto[:k] or mode sizes like 64x36x64")
    p_cap.add_argument("--ranks", nargs="+", type=parse_rank, default=[2],
                       help="ints, inner ranks like 2,4,2, or r/R")
    p_cap.add_argument("--out", default=None, help="also write capture.md and capture.csv into this folder")

    args = parser.parse_args(argv)
    try:
        return _dispatch(args, command)
    except (SettingError, TTShapeError) as err:  # a bad setting: a usage error, not a traceback
        parser.error(str(err))


def _dispatch(args: argparse.Namespace, command: str) -> int:
    if args.command == "finetune":
        from .finetune import finetune

        finetune(config_from_args(args))
    elif args.command == "compare":
        from .compare import run_compare

        base = config_from_args(args, method="tt", seed=0, learning_rate=None)
        run_compare(base, args.methods, args.seeds, args.out, _method_map(args.lr), command=command,
                    weight_decays=_method_map(args.wd))
    elif args.command == "search":
        from .search import SearchSpace, run_search

        base = config_from_args(args, method="tt", learning_rate=None)
        given = {name: value for name, value in (("ranks", args.ranks), ("alphas", args.alphas),
                                                 ("learning_rates", args.lrs), ("weight_decays", args.weight_decays),
                                                 ("init_scales", args.init_scales)) if value}
        space = SearchSpace(shapes=args.shapes or [], **given)  # validated before any model loads
        result = run_search(base, args.trials, space, backend=args.backend, pruner=args.pruner,
                            sampler_seed=args.sampler_seed, out_dir=args.out,
                            max_adapter_params=args.max_adapter_params)
        (result.out_dir / "command.txt").write_text(command + "\n")
    elif args.command == "capture":
        from .capture import capture_table, lora_updates
        from .tables import markdown_table, write_csv

        updates = lora_updates(args.adapter)
        rows = capture_table(updates, args.shapes, args.ranks)
        table = markdown_table(rows, ["structure", "params", "mean_rel_error", "min_rel_error", "max_rel_error",
                                      "kept_energy", "note"])
        print(f"{len(updates)} LoRA layers from {args.adapter}\n\n{table}")
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            write_csv(out / "capture.csv", rows)
            (out / "capture.md").write_text(f"```\n{command}\n```\n\n{len(updates)} LoRA layers.\n\n{table}\n")
    elif args.command in ("budget", "trend"):
        from .budget import write_budget, write_trend

        write, extra = ((write_budget, {}) if args.command == "budget"
                        else (write_trend, {"methods": tuple(args.methods)}))
        try:
            md, png = write(args.folders, args.out, title=args.title, max_gap=args.max_gap,
                            min_ratio=args.min_ratio, command=command, **extra)
        except (FileNotFoundError, ValueError) as err:
            raise SystemExit(f"{args.command}: {err}") from None
        print(f"{md}\n{png}\n{md.read_text()}")
    elif args.command == "plot":
        from .plots import plot_results

        for path in plot_results(args.folder, title=args.title):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
