"""HyperBand search over TT shape, rank, α and learning rate, as in the paper (Section IV-D, Table III); weight
decay and the cores' init scale are optional axes.

It goes through the HF ``Trainer.hyperparameter_search``:

* backend ``optuna`` (default): the Trainer's optuna backend, with ``optuna.pruners.HyperbandPruner`` and a
  seeded TPE sampler passed through to ``optuna.create_study``. The Trainer reports the objective to the trial
  at every evaluation (``trial.report(objective, global_step)``) and raises ``TrialPruned`` when HyperBand says
  so, so a trial's "resource" is its optimizer step count (min_resource = one evaluation interval,
  max_resource = the full schedule). The objective is the lowest validation loss seen so far in the trial
  (the paper selects models by validation loss; early stopping and ``load_best_model_at_end`` keep that model).
* backend ``ray`` (optional extra, ``pip install 'ttkernels[ray]'``): Ray Tune with its ``HyperBandScheduler``.

``model_init(trial)`` builds a fresh model for every trial and patches it with the trial's shape/rank/α; the
learning rate is a ``TrainingArguments`` field the Trainer sets itself. The search records every trial (state,
hyperparameters, parameter counts, best validation loss and the validation metrics at that point, steps run)
into ``trials.csv`` / ``trials.md`` and the best configuration into ``best.json``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ttkernels.errors import SettingError
from ttkernels.utils import (
    validate_alpha,
    validate_count,
    validate_init_scale,
    validate_learning_rate,
    validate_weight_decay,
)

from .finetune import (
    FinetuneConfig,
    apply_method,
    build_trainer,
    prepare,
    resolve_shape,
    shape_label,
    steps_plan,
    target_dims,
)
from .models import load_model
from .tables import markdown_table, write_csv

#: Table III of the paper (DeBERTa / RoBERTa / LLaMA shapes); a shape is offered when it fits every target.
PAPER_SHAPES: list[list[int]] = [
    [64, 36, 12, 64], [32, 12, 3, 4, 12, 32], [12, 8, 8, 3, 8, 8, 12], [32, 16, 2, 3, 3, 3, 2, 32],
    [32, 4, 2, 2, 2, 3, 3, 3, 2, 32], [16, 2, 4, 2, 2, 2, 3, 3, 3, 2, 2, 16], [64, 16, 9, 64],
    [12, 8, 8, 8, 8, 12], [12, 8, 8, 2, 4, 8, 12], [12, 8, 8, 2, 2, 2, 8, 12], [8, 6, 2, 2, 4, 4, 2, 2, 6, 8],
    [8, 6, 2, 2, 2, 2, 2, 2, 2, 6, 8], [128, 32, 32, 128], [16, 16, 16, 16, 16, 16], [16, 16, 4, 4, 4, 4, 16, 16],
    [16, 8, 4, 4, 2, 2, 4, 4, 8, 16], [16, 4, 4, 4, 2, 2, 2, 2, 4, 4, 4, 16],
]
AUTO_MAX_MODES = (4, 6, 8, 12, 16, 32, 64)
OUTER_MAX_MODES = (32, 64)


@dataclass
class SearchSpace:
    """Discrete choices (as in the paper's Table III). Shapes are specs for ``resolve_shape``."""

    shapes: list[str]
    ranks: list[int | str] = field(default_factory=lambda: [2, 4, 5, 8, 10])  # ints, or "r/R" boundary ranks
    # With Adam and unit-scale cores the good region is a high lr with a small alpha (alpha*lr ≲ 1e-2; see
    # DEFAULT_LR in finetune.py); with this library's unit-scale init, the paper's ranges (alpha 1..32, lr ≤ 1e-3)
    # train the factors too slowly.
    alphas: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0])
    learning_rates: list[float] = field(default_factory=lambda: [1e-3, 3e-3, 1e-2, 3e-2])
    # None: no axis, every trial uses the base config's weight decay (TT-LoRA overfits small training sets,
    # where 0.1 helped on MiniLM; offer e.g. [0.0, 0.1] to search it)
    weight_decays: list[float] | None = None
    # None: no axis, every trial uses the base config's init_scale. With Adam, smaller initial cores turn faster
    # (the alternative to a high lr; results/minilm-tweets/README.md, "Core scale"); alpha is used as given, so
    # pair small scales with larger alphas (1/init_scale^(d-1) keeps the update's initial growth)
    init_scales: list[float] | None = None

    def __post_init__(self) -> None:
        # every choice checked here, before any model loads, rather than when a trial draws it
        self.alphas = [validate_alpha(a, "SearchSpace.alphas") for a in self.alphas]
        self.learning_rates = [validate_learning_rate(lr, "SearchSpace.learning_rates") for lr in self.learning_rates]
        if self.weight_decays is not None:
            self.weight_decays = [validate_weight_decay(w, "SearchSpace.weight_decays") for w in self.weight_decays]
        if self.init_scales is not None:
            self.init_scales = [validate_init_scale(s, "SearchSpace.init_scales") for s in self.init_scales]


def candidate_shapes(model, targets=None, max_modes=AUTO_MAX_MODES, paper: bool = True,
                     outer_max_modes=OUTER_MAX_MODES) -> list[str]:
    """Shape specs for the search: ``auto:<k>`` for each max_mode k and ``outer:<k>`` (end-heavy shapes) for each
    outer max_mode, keeping those that give a distinct set of shapes, plus the paper's Table III shapes whose
    product fits every target layer (m·n)."""
    seen: dict[str, str] = {}
    specs = [f"auto:{k}" for k in max_modes] + [f"outer:{k}" for k in outer_max_modes]
    for spec in specs:
        seen.setdefault(shape_label(resolve_shape(model, targets, spec)), spec)
    if paper:
        sizes = {m * n for m, n in target_dims(model, targets).values()}
        for shape in PAPER_SHAPES:
            if len(sizes) == 1 and math.prod(shape) in sizes:
                seen.setdefault(shape_label(shape), shape_label(shape))
    return list(seen.values())


def default_space(model, targets=None) -> SearchSpace:
    return SearchSpace(shapes=candidate_shapes(model, targets))


@dataclass
class SearchResult:
    best: dict[str, Any]
    trials: list[dict[str, Any]]
    out_dir: Path | None


TRIAL_COLUMNS = [
    "trial", "state", "shape", "rank", "alpha", "init_scale", "learning_rate", "weight_decay", "adapter_params",
    "trainable_params", "adapter_kb_fp16", "best_val_loss", "val_accuracy", "val_f1", "val_mcc", "steps",
    "best_step", "time_s", "note",
]


class _TrialLog:
    """Shared state between model_init, the objective and the evaluation callback (one trial at a time)."""

    def __init__(self) -> None:
        self.trial: Any = None
        self.best = math.inf
        self.info: dict[str, Any] = {}
        self.start = time.perf_counter()

    def reset(self, trial: Any, info: dict[str, Any]) -> None:
        self.trial, self.best, self.info, self.start = trial, math.inf, info, time.perf_counter()
        self._set("info", info)

    def _set(self, key: str, value: Any) -> None:
        setter = getattr(self.trial, "set_user_attr", None)
        if setter is not None:
            setter(key, value)

    def objective(self, metrics: dict[str, float]) -> float:
        """Lowest validation loss so far in this trial (what early stopping + load-best keep)."""
        loss = float(metrics["eval_loss"])
        if loss < self.best:
            self.best = loss
            self._set("at_best", {k[5:]: float(v) for k, v in metrics.items()
                                  if k.startswith("eval_") and not k.endswith(("_runtime", "_per_second"))})
        return self.best


def optuna_space(space: SearchSpace):
    """The Trainer's ``hp_space`` for optuna (suggesting the same name twice returns the same value)."""

    def hp_space(trial) -> dict[str, Any]:
        return {
            "learning_rate": trial.suggest_categorical("learning_rate", space.learning_rates),
            "tt_shape": trial.suggest_categorical("tt_shape", space.shapes),
            "tt_rank": trial.suggest_categorical("tt_rank", space.ranks),
            "tt_alpha": trial.suggest_categorical("tt_alpha", space.alphas),
            **({"weight_decay": trial.suggest_categorical("weight_decay", space.weight_decays)}
               if space.weight_decays else {}),
            **({"tt_init_scale": trial.suggest_categorical("tt_init_scale", space.init_scales)}
               if space.init_scales else {}),
        }

    return hp_space


def _rank_value(rank: Any) -> int | str:
    """A trial's rank choice: "r/R" stays a string (each TTLinear resolves it for its shape), the rest is an int."""
    return rank if isinstance(rank, str) and "/" in rank else int(rank)


def _trial_config(base: FinetuneConfig, params: dict[str, Any]) -> FinetuneConfig:
    """``base`` with a trial's hyperparameters (weight decay and init scale only when the space searched them)."""
    return replace(base, shape=params["tt_shape"], rank=_rank_value(params["tt_rank"]),
                   alpha=float(params["tt_alpha"]), learning_rate=float(params["learning_rate"]),
                   weight_decay=float(params.get("weight_decay", base.weight_decay)),
                   init_scale=float(params.get("tt_init_scale", base.init_scale)))


def _trial_params(trial: Any, base: FinetuneConfig, space: SearchSpace) -> dict[str, Any]:
    """The trial's hyperparameters: optuna trial (the Trainer calls model_init before it sets the trial
    up, so ask the space here), Ray Tune dict, or None (the Trainer's first model_init call)."""
    if trial is None:
        return {"tt_shape": base.shape, "tt_rank": base.rank, "tt_alpha": base.alpha, "learning_rate": base.lr}
    if hasattr(trial, "suggest_categorical"):
        return optuna_space(space)(trial)
    return dict(trial)


def _skip_duplicate(trial: Any) -> None:
    """Samplers may propose a configuration that already ran; don't train it twice (marked pruned, with a
    ``duplicate_of`` note and the earlier trial's numbers)."""
    study = getattr(trial, "study", None)
    if study is None:
        return
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    for earlier in study.get_trials(deepcopy=False, states=done):
        if earlier.params == trial.params and "duplicate_of" not in earlier.user_attrs:
            for key, value in earlier.user_attrs.items():
                trial.set_user_attr(key, value)
            trial.set_user_attr("duplicate_of", earlier.number)
            raise optuna.TrialPruned(f"same configuration as trial {earlier.number}")


def _callback(log: _TrialLog):
    from transformers import TrainerCallback

    class RecordEvaluations(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            log._set("weight_decay", args.weight_decay)  # what the Trainer used (a searched one is set on args)
            log._set("steps", state.global_step)
            log._set("time_s", time.perf_counter() - log.start)
            if metrics is not None and float(metrics.get("eval_loss", math.inf)) <= log.best:
                log._set("best_step", state.global_step)

    return RecordEvaluations()


#: Hyperparameter-search backends of ``Trainer.hyperparameter_search`` that run_search drives.
SEARCH_BACKENDS = ("optuna", "ray")


def run_search(
    base: FinetuneConfig,
    n_trials: int = 20,
    space: SearchSpace | None = None,
    *,
    backend: str = "optuna",
    pruner: Any = "hyperband",
    sampler_seed: int = 0,
    out_dir: str | Path | None = None,
    max_adapter_params: int | None = None,
    verbose: bool = True,
) -> SearchResult:
    """HyperBand search for ``base`` (method "tt"); returns the best configuration and the trial table.

    ``max_adapter_params``: also report the best trial (lowest validation loss, completed trials first)
    among those with at most this many adapter parameters (``best.json`` -> ``within_budget``).
    """
    # checked before the data and model load
    if backend not in SEARCH_BACKENDS:
        raise SettingError(f"unknown search backend {backend!r}; use one of {', '.join(map(repr, SEARCH_BACKENDS))}")
    n_trials = validate_count(n_trials, "run_search", "n_trials")
    max_adapter_params = validate_count(max_adapter_params, "run_search", "max_adapter_params", allow_none=True)
    if base.method != "tt":
        base = replace(base, method="tt")
    # data, tokenizer, tokenised splits (the model is re-made per trial; "head" leaves its layers unpatched)
    prep = prepare(replace(base, method="head", save_adapter=False))
    if space is None or not space.shapes:
        defaults = default_space(prep.model, base.targets)
        space = defaults if space is None else replace(space, shapes=defaults.shapes)
    log = _TrialLog()

    def model_init(trial=None):
        params = _trial_params(trial, base, space)
        _skip_duplicate(trial)
        cfg = _trial_config(base, params)
        from transformers import set_seed

        set_seed(base.seed)
        loaded = load_model(base.model, base.task, num_labels=prep.data.num_labels)
        model, info, shape = apply_method(loaded.model, cfg)
        log.reset(trial, {"shape": shape_label(shape), "adapter_params": info.adapter_params,
                          "trainable_params": info.trainable_params, "adapter_kb_fp16": info.adapter_kb,
                          "init_scale": built_init_scale(model)})
        return model

    out = Path(out_dir) if out_dir else Path(base.output_dir) / "search"
    if backend == "ray":
        # Ray pickles the Trainer to its workers; after an earlier training run in this process, accelerate's
        # shared GradientState holds weakrefs to that run's dataloaders, which cannot be pickled
        from accelerate.state import GradientState

        if hasattr(GradientState, "_reset_state"):  # private API; absent, a fresh process needs no reset
            GradientState._reset_state()
    trainer = build_trainer(base, prep, out / "trials", model_init=model_init, callbacks_extra=[_callback(log)])
    total, every = steps_plan(base, len(prep.datasets["train"]))
    if verbose:
        print(f"[search] {n_trials} trials, backend {backend}, {total} steps max per trial, evaluation every "
              f"{every} steps; space: shapes {space.shapes}, ranks {space.ranks}, alphas {space.alphas}, "
              f"learning rates {space.learning_rates}"
              + (f", weight decays {space.weight_decays}" if space.weight_decays else "")
              + (f", init scales {space.init_scales}" if space.init_scales else ""))
    if backend == "optuna":
        trials, best = _run_optuna(trainer, space, n_trials, log, pruner, sampler_seed, every, total,
                                   base.weight_decay, base.init_scale)
    else:  # "ray"
        trials, best = _run_ray(trainer, space, n_trials, log, every, total, out, base.patience, base.init_scale)
        for row in trials:  # each Ray trial ran in its own worker process; count its parameters here
            row.update(_describe_trial(prep.model, base, row))
    best_cfg = _trial_config(base, best)
    best_record = {"trial": best.get("trial"), "objective_best_val_loss": best.get("value"),
                   "params": {k: best[k] for k in ("tt_shape", "tt_rank", "tt_alpha", "tt_init_scale", "learning_rate",
                                                       "weight_decay")
                              if k in best},
                   "config": best_cfg.to_dict(), "backend": backend, "n_trials": n_trials, "space": asdict(space)}
    if max_adapter_params is not None:
        best_record["within_budget"] = best_within_budget(trials, max_adapter_params)
    if out_dir is not None:
        write_trials(trials, best_record, out)
    if verbose:
        print(markdown_table(trials, TRIAL_COLUMNS))
        print(f"[search] best: trial {best_record['trial']} {best_record['params']} "
              f"(best validation loss {best_record['objective_best_val_loss']:.4f})")
    import shutil

    shutil.rmtree(out / "trials", ignore_errors=True)
    return SearchResult(best_record, trials, out if out_dir is not None else None)


def make_pruner(pruner: Any, every: int, total: int):
    import optuna

    if pruner is None or pruner == "none":
        return optuna.pruners.NopPruner()
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=every, max_resource=total, reduction_factor=3)
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_warmup_steps=every)
    return pruner  # an optuna pruner object


def _run_optuna(trainer, space: SearchSpace, n_trials: int, log: _TrialLog, pruner: Any, seed: int,
                every: int, total: int, weight_decay: float = 0.0, init_scale: float = 1.0):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    hp_space = optuna_space(space)
    storage = optuna.storages.InMemoryStorage()
    try:
        trainer.hyperparameter_search(
            hp_space=hp_space, compute_objective=log.objective, n_trials=n_trials, direction="minimize",
            backend="optuna", storage=storage, study_name="ttkernels",
            sampler=optuna.samplers.TPESampler(seed=seed), pruner=make_pruner(pruner, every, total),
        )
    except ValueError as err:  # the Trainer asks for study.best_trial, which fails when every trial was pruned
        if "No trials are completed" not in str(err):
            raise
    study = optuna.load_study(study_name="ttkernels", storage=storage)
    rows = []
    for t in study.trials:
        info = t.user_attrs.get("info", {})
        at_best = t.user_attrs.get("at_best", {})
        values = t.intermediate_values
        rows.append({
            "trial": t.number, "state": t.state.name.lower(), "shape": info.get("shape", t.params.get("tt_shape")),
            "shape_spec": t.params.get("tt_shape"), "rank": t.params.get("tt_rank"),
            "alpha": t.params.get("tt_alpha"),
            "init_scale": info.get("init_scale", t.params.get("tt_init_scale", init_scale)),
            "learning_rate": t.params.get("learning_rate"),
            "weight_decay": t.user_attrs.get("weight_decay", t.params.get("weight_decay", weight_decay)),
            "adapter_params": info.get("adapter_params"), "trainable_params": info.get("trainable_params"),
            "adapter_kb_fp16": info.get("adapter_kb_fp16"),
            "best_val_loss": min(values.values()) if values else t.value,
            "val_accuracy": at_best.get("accuracy"), "val_f1": at_best.get("f1"), "val_mcc": at_best.get("mcc"),
            "steps": t.user_attrs.get("steps", max(values) if values else None),
            "best_step": t.user_attrs.get("best_step"), "time_s": t.user_attrs.get("time_s"),
            "reports": len(values),
            "note": f"duplicate of trial {t.user_attrs['duplicate_of']}" if "duplicate_of" in t.user_attrs else "",
        })
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best_trial = study.best_trial
        value = best_trial.value
    else:  # every trial pruned: the lowest validation loss any of them reached
        reported = [t for t in study.trials if t.intermediate_values]
        if not reported:
            raise RuntimeError("the search finished without any trial reporting a validation loss")
        best_trial = min(reported, key=lambda t: min(t.intermediate_values.values()))
        value = min(best_trial.intermediate_values.values())
    best = {**best_trial.params, "trial": best_trial.number, "value": value}
    return rows, best


def ray_trial_state(status: str, losses: list[float], max_reports: int, patience: int) -> str:
    """complete / pruned / error for a Ray trial from its validation losses, as optuna labels its trials: a trial
    that ran every evaluation, or that the Trainer's early stopping ended (``patience`` evaluations after its
    best), is complete; one that HyperBand stopped earlier is pruned."""
    if status == "ERROR":
        return "error"
    if len(losses) >= max_reports:
        return "complete"
    if losses and len(losses) - 1 - losses.index(min(losses)) >= patience:
        return "complete"
    return "pruned"


def _run_ray(trainer, space: SearchSpace, n_trials: int, log: _TrialLog, every: int, total: int, out: Path,
             patience: int = 5, init_scale: float = 1.0):
    try:
        from ray import tune
        from ray.tune.schedulers import HyperBandScheduler
    except ImportError as err:  # pragma: no cover - optional extra
        raise ImportError(
            "the Ray Tune backend is an optional extra: pip install 'ttkernels[ray]' (or pip install 'ray[tune]'); "
            "the default backend, optuna, needs no extra"
        ) from err

    def hp_space(_trial=None):
        return {
            "learning_rate": tune.choice(space.learning_rates), "tt_shape": tune.choice(space.shapes),
            "tt_rank": tune.choice(space.ranks), "tt_alpha": tune.choice(space.alphas),
            **({"weight_decay": tune.choice(space.weight_decays)} if space.weight_decays else {}),
            **({"tt_init_scale": tune.choice(space.init_scales)} if space.init_scales else {}),
        }

    max_reports = max(1, total // every)
    scheduler = HyperBandScheduler(time_attr="training_iteration", metric="objective", mode="min",
                                   max_t=max_reports, reduction_factor=3)
    best_run = trainer.hyperparameter_search(
        hp_space=hp_space, compute_objective=log.objective, n_trials=n_trials, direction="minimize",
        backend="ray", scheduler=scheduler, resources_per_trial={"cpu": 1},
        storage_path=str((out / "trials" / "ray").resolve()),  # checkpoints: removed with out/trials at the end
    )
    rows = []
    analysis = best_run.run_summary
    try:  # every report of every trial (Ray marks HyperBand's stop and a normal end alike as "done")
        frames = analysis.trial_dataframes or {}
    except Exception:  # pragma: no cover - the progress files could not be read
        frames = {}
    for i, trial in enumerate(getattr(analysis, "trials", []) or []):
        cfg, last = trial.config, trial.last_result or {}
        reports = last.get("training_iteration")
        frame = frames.get(trial.trial_id)
        losses = [float(v) for v in frame["eval_loss"]] if frame is not None and "eval_loss" in frame else []
        state = ray_trial_state(str(trial.status), losses, max_reports, patience)
        rows.append({
            "trial": i, "state": state, "shape_spec": cfg.get("tt_shape"), "rank": cfg.get("tt_rank"),
            "alpha": cfg.get("tt_alpha"), "init_scale": cfg.get("tt_init_scale", init_scale),
            "learning_rate": cfg.get("learning_rate"),
            "weight_decay": cfg.get("weight_decay", trainer.args.weight_decay),
            "best_val_loss": last.get("objective"),  # the objective is the trial's running minimum
            "val_accuracy": last.get("eval_accuracy"), "val_f1": last.get("eval_f1"),
            "val_mcc": last.get("eval_mcc"), "reports": reports,
            "steps": None if reports is None else min(total, reports * every),
            "best_step": (losses.index(min(losses)) + 1) * every if losses else None,
            "time_s": last.get("time_total_s"),
        })
    best = {**best_run.hyperparameters, "trial": best_run.run_id, "value": best_run.objective}
    return rows, best


def built_init_scale(model: Any) -> float | None:
    """The init scale the model's TT layers were built with (None without TT layers)."""
    from ttkernels.layer import TTLinear

    return next((m.init_scale for m in model.modules() if isinstance(m, TTLinear)), None)


def _describe_trial(model: Any, base: FinetuneConfig, row: dict[str, Any]) -> dict[str, Any]:
    """The resolved shape and parameter counts of a trial's configuration, on a copy of the unpatched model
    (one deep copy at a time: the search's host must hold the model twice)."""
    import copy

    cfg = _trial_config(base, {"tt_shape": row["shape_spec"], "tt_rank": row["rank"], "tt_alpha": row["alpha"],
                               "learning_rate": row["learning_rate"]})
    _, info, shape = apply_method(copy.deepcopy(model), cfg)
    return {"shape": shape_label(shape), "adapter_params": info.adapter_params,
            "trainable_params": info.trainable_params, "adapter_kb_fp16": info.adapter_kb}


def best_within_budget(trials: list[dict[str, Any]], max_adapter_params: int) -> dict[str, Any] | None:
    """The trial with the lowest best validation loss among those within the parameter budget (completed
    trials preferred over pruned ones, which stopped before the full schedule)."""
    fits = [t for t in trials if t.get("adapter_params") is not None and t["adapter_params"] <= max_adapter_params
            and t.get("best_val_loss") is not None]
    if not fits:
        return None
    best = min(fits, key=lambda t: (t["state"] != "complete", t["best_val_loss"]))
    return {"max_adapter_params": max_adapter_params, **best}


def write_trials(trials: list[dict[str, Any]], best: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "trials.csv", trials)
    (out / "trials.md").write_text(markdown_table(trials, TRIAL_COLUMNS) + "\n")
    (out / "best.json").write_text(json.dumps(best, indent=2, default=str) + "\n")
