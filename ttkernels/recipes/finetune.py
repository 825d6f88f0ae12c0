"""The fine-tuning recipe, on top of the HF ``Trainer``: patch -> train with early stopping -> evaluate -> save.

As in the paper: training stops when the validation loss has not improved for ``patience`` (5) evaluations,
and the model with the lowest validation loss is restored at the end (``load_best_model_at_end``). Metrics are
the paper's (:mod:`ttkernels.recipes.metrics`). Methods:

``tt``    ttkernels TT-LoRA on the target layers (default: query/value), classification head trainable.
``lora``  PEFT LoRA (r=8, lora_alpha=16 by default) on the same targets, classification head trainable.
``full``  full fine-tuning (every parameter trains).
``head``  only the classification head trains (a linear probe on the frozen model).

Tasks: ``seq-cls`` (``AutoModelForSequenceClassification``: BERT/RoBERTa/DeBERTa/LLaMA heads) and
``causal-lm`` (``AutoModelForCausalLM``: the label is generated as a word after a prompt; the loss is on the
answer tokens; accuracy compares the logits of the label words at the answer position).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

import ttkernels
from ttkernels.errors import SettingError
from ttkernels.shapes import auto_shape, outer_shape
from ttkernels.utils import (
    is_finite_real,
    is_integer,
    validate_count,
    validate_dropout,
    validate_init,
    validate_init_scale,
    validate_learning_rate,
    validate_weight_decay,
)

from .data import TextData, load_data
from .metrics import classification_metrics, make_compute_metrics
from .models import LoadedModel, head_modules, load_model

METHODS = ("tt", "lora", "full", "head")

#: Learning rates used when FinetuneConfig.learning_rate is None (chosen on the validation split of the
#: MiniLM/tweets task; see results/minilm-tweets/README.md). TT-LoRA's is high on purpose and goes with a small
#: alpha: its cores are unit-scale, so with Adam lr is the relative step of the factors' directions (LoRA's A has
#: entries ~1/sqrt(n), so its lr 2e-3 is a similar relative step), while alpha sets the size of ΔW (alpha*lr ≲ 1e-2).
#: ``init_scale`` < 1 is the other way to the same relative step (results/minilm-tweets/README.md, "Core scale").
DEFAULT_LR = {"tt": 3e-2, "lora": 1e-3, "full": 1e-4, "head": 5e-3}


@dataclass
class FinetuneConfig:
    """Everything one fine-tuning run needs. ``python -m ttkernels.recipes finetune --help`` lists the flags."""

    method: str = "tt"
    model: str = "minilm"
    data: str = "tweets"
    task: str = "seq-cls"
    train_size: int | None = 2000
    val_size: int | None = 400
    test_size: int | None = 1000
    max_length: int = 64
    epochs: float = 3.0
    max_steps: int = -1
    batch_size: int = 32
    eval_batch_size: int = 128
    learning_rate: float | None = None
    head_lr: float | None = None  # learning rate of the classification head (None: learning_rate)
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    evals_per_epoch: int = 2
    eval_steps: int | None = None
    patience: int = 5
    group_by_length: bool = True  # batches of similar length: less padding, faster on CPU
    seed: int = 0
    # TT-LoRA
    targets: list[str] | None = None
    rank: int | list[int] | str = 5  # an int, the inner ranks, or "r/R" (R at the in/out bond; see TTLinear)
    alpha: float = 0.25  # goes with DEFAULT_LR["tt"]; see the note there
    shape: Any = None  # None, "auto:<max_mode>", a list of mode sizes, or a dict target -> shape
    init: str = "zero"
    init_scale: float = 1.0  # multiplies the initial cores (TTLinear); < 1 trains the non-zero cores faster
    dropout: float = 0.0  # on the TT path's input (PEFT's lora_dropout for TT-LoRA)
    # PEFT LoRA baseline
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    # causal-LM prompt ("{text}" and the label word are filled in)
    prompt: str = "Text: {text}\nSentiment:"
    # bookkeeping
    output_dir: str = "runs/finetune"
    save_adapter: bool = True
    keep_checkpoints: bool = False
    evaluate_before: bool = True
    progress: bool = True
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SettingError(f"unknown method {self.method!r}; known: {METHODS}")
        if self.task not in ("seq-cls", "causal-lm"):
            raise SettingError(f"unknown task {self.task!r}; known: seq-cls, causal-lm")
        # TT settings checked here, before a model or data set is loaded (patch checks them again)
        validate_init(self.init, "FinetuneConfig")
        self.init_scale = validate_init_scale(self.init_scale, "FinetuneConfig")
        self.dropout = validate_dropout(self.dropout, "FinetuneConfig")
        if self.learning_rate is not None:
            self.learning_rate = validate_learning_rate(self.learning_rate, "FinetuneConfig")
        if self.head_lr is not None:
            self.head_lr = validate_learning_rate(self.head_lr, "FinetuneConfig", "head_lr")
        self.weight_decay = validate_weight_decay(self.weight_decay, "FinetuneConfig")
        self._validate_schedule()

    def _validate_schedule(self) -> None:
        """Sizes, lengths, the step schedule and the seed: counts are integers >= 1 (a split size may be None: all
        of it); the seed is what numpy accepts."""
        where = "FinetuneConfig"
        for name in ("train_size", "val_size", "test_size", "eval_steps", "threads"):
            setattr(self, name, validate_count(getattr(self, name), where, name, allow_none=True))
        for name in ("max_length", "batch_size", "eval_batch_size", "evals_per_epoch", "patience"):
            setattr(self, name, validate_count(getattr(self, name), where, name))
        if not is_integer(self.max_steps):
            raise SettingError(
                f"{where}: max_steps must be an integer (<= 0: train for epochs), got {self.max_steps!r}")
        self.max_steps = int(self.max_steps)  # numpy ints too; to_dict() goes to JSON
        if self.max_steps <= 0 and not (is_finite_real(self.epochs) and self.epochs > 0):
            raise SettingError(f"{where}: epochs must be a finite number > 0 when max_steps <= 0, got {self.epochs!r}")
        if not is_integer(self.seed) or not 0 <= self.seed < 2**32:
            raise SettingError(f"{where}: seed must be an integer in [0, 2**32), got {self.seed!r}")
        self.seed = int(self.seed)
        if not (is_finite_real(self.warmup_ratio) and 0 <= self.warmup_ratio < 1):
            raise SettingError(f"{where}: warmup_ratio must be a number in [0, 1), got {self.warmup_ratio!r}")

    @property
    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LR[self.method]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# ------------------------------------------------------------------------------------------------ shapes


def target_dims(model: nn.Module, targets: list[str] | str | None) -> dict[str, tuple[int, int]]:
    """(out, in) dims of every linear layer ``patch`` would wrap, by full module name."""
    from ttkernels.layer import base_dims
    from ttkernels.patching import match_target, resolve_targets

    resolved = resolve_targets(_inner_model(model), targets)
    dims = {}
    for name, module in _inner_model(model).named_modules():
        if name and match_target(name, resolved) is not None:
            try:
                dims[name] = base_dims(module)
            except TypeError:
                continue
    return dims


def resolve_shape(model: nn.Module, targets: list[str] | str | None, spec: Any) -> Any:
    """Turn a shape spec into what ``ttkernels.patch(shape=...)`` takes.

    ``None`` -> None (the default auto_shape); ``"auto:<k>"`` -> per layer ``auto_shape(m, n, max_mode=k)``;
    ``"outer"`` / ``"outer:<k>"`` -> per layer ``outer_shape(m, n, max_mode=k)`` (k = 64 by default; the paper's
    end-heavy shapes); ``"12x8x4x4x8x12"`` or a list -> that shape for every target layer; a dict is passed through.
    """
    if spec is None or isinstance(spec, dict):
        return spec
    if isinstance(spec, str) and spec.split(":", 1)[0] in ("auto", "outer"):
        dims = target_dims(model, targets)
        return _compress_shape_dict({name: shape_for_spec(spec, m, n) for name, (m, n) in dims.items()})
    if isinstance(spec, str):
        return _mode_sizes(spec)  # the same shape for every layer
    return list(spec)


def _mode_sizes(spec: str) -> list[int]:
    return [int(k) for k in spec.lower().split("x")]


def shape_for_spec(spec: str, m: int, n: int) -> list[int]:
    """One layer's (m x n) TT shape from a spec string: ``auto[:<k>]``, ``outer[:<k>]`` or mode sizes ``AxBxC``."""
    kind, _, k = spec.partition(":")
    if kind in ("auto", "outer"):
        factoriser = auto_shape if kind == "auto" else outer_shape
        return factoriser(m, n) if not k else factoriser(m, n, int(k))
    return _mode_sizes(spec)


def _compress_shape_dict(shapes: dict[str, list[int]]) -> dict[str, list[int]] | list[int]:
    """One list if every layer has the same shape, else a dict keyed by the last name component when that is
    unambiguous (``q_proj``), else by full module name."""
    values = list(shapes.values())
    if values and all(v == values[0] for v in values):
        return values[0]
    by_suffix: dict[str, list[int]] = {}
    for name, shape in shapes.items():
        suffix = name.rsplit(".", 1)[-1]
        if by_suffix.setdefault(suffix, shape) != shape:
            return shapes
    return by_suffix


def shape_label(shape: Any) -> str:
    """Short text for a resolved shape: ``24x16x16x24`` or ``q_proj=..;v_proj=..``."""
    if shape is None:
        return "auto"
    if isinstance(shape, dict):
        return ";".join(f"{k}={shape_label(v)}" for k, v in shape.items())
    return "x".join(str(k) for k in shape)


# ------------------------------------------------------------------------------------------------ methods


def _inner_model(model: nn.Module) -> nn.Module:
    """The transformers model under a PeftModel wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


@dataclass
class ParameterInfo:
    """Parameter counts of a prepared model. ``adapter_params`` excludes the head (TT cores / LoRA A,B)."""

    adapter_params: int
    head_params: int
    trainable_params: int
    total_params: int
    adapter_bytes: int  # everything that is saved and trains (adapter + head), at 16 bit

    @property
    def adapter_kb(self) -> float:
        return self.adapter_bytes / 1024


def apply_method(model: nn.Module, cfg: FinetuneConfig) -> tuple[nn.Module, ParameterInfo, Any]:
    """Prepare ``model`` for ``cfg.method``; return (model, parameter counts, the resolved TT shape or None)."""
    heads = head_modules(model) if cfg.task == "seq-cls" else []
    total = sum(p.numel() for p in model.parameters())
    head_params = sum(p.numel() for h in heads for n, m in model.named_modules()
                      if n == h or n.endswith("." + h) for p in m.parameters())
    resolved_shape = None
    if cfg.method == "tt":
        resolved_shape = resolve_shape(model, cfg.targets, cfg.shape)
        ttkernels.patch(
            model, targets=cfg.targets, rank=cfg.rank, alpha=cfg.alpha, shape=resolved_shape, init=cfg.init,
            init_scale=cfg.init_scale,
            dropout=cfg.dropout, modules_to_save=heads or None,
        )
        count = ttkernels.trainable_parameters(model)
        info = ParameterInfo(count.tt_cores, head_params, count.trainable, count.total,
                             ttkernels.adapter_size_bytes(model, torch.float16))
        if resolved_shape is None:
            resolved_shape = _compress_shape_dict({n: list(layer.shape) for n, layer in
                                                   ttkernels.tt_layers(model).items()})
    elif cfg.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        from ttkernels.patching import resolve_targets

        targets = resolve_targets(model, cfg.targets)
        lora = LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=targets,
            task_type=TaskType.SEQ_CLS if cfg.task == "seq-cls" else TaskType.CAUSAL_LM,
            modules_to_save=heads or None,
        )
        model = get_peft_model(model, lora)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        lora_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n and p.requires_grad)
        info = ParameterInfo(lora_params, head_params, trainable, total, 2 * trainable)
    elif cfg.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        info = ParameterInfo(total, head_params, total, total, 2 * total)
    else:  # head
        if not heads:
            raise ValueError("method 'head' needs a classification head (task='seq-cls')")
        for n, p in model.named_parameters():
            p.requires_grad_(any(n.startswith(h + ".") or f".{h}." in n for h in heads))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        info = ParameterInfo(0, head_params, trainable, total, 2 * trainable)
    return model, info, resolved_shape


# ------------------------------------------------------------------------------------------------ data


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def tokenize_classification(examples, tokenizer, max_length: int) -> ListDataset:
    texts = [t for t, _ in examples]
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    return ListDataset([{**{k: enc[k][i] for k in keys}, "labels": y} for i, (_, y) in enumerate(examples)])


def label_words(label_names: list[str], tokenizer) -> list[int]:
    """First token id of " <label>" for each label; they must differ (the causal-LM answer tokens)."""
    ids = [tokenizer(" " + name, add_special_tokens=False)["input_ids"][0] for name in label_names]
    if len(set(ids)) != len(ids):
        raise ValueError(f"label words {label_names} share their first token; rename the labels")
    return ids


def tokenize_causal(examples, tokenizer, max_length: int, label_names: list[str], prompt: str) -> ListDataset:
    """prompt tokens (label -100) + answer tokens + eos (labelled); the text is cut to fit ``max_length``."""
    items = []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for text, y in examples:
        answer = tokenizer(" " + label_names[y], add_special_tokens=False)["input_ids"] + eos
        head, tail = prompt.split("{text}")
        head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
        tail_ids = tokenizer(tail, add_special_tokens=False)["input_ids"]
        budget = max(1, max_length - len(head_ids) - len(tail_ids) - len(answer))
        text_ids = tokenizer(text, add_special_tokens=False)["input_ids"][:budget]
        prompt_ids = head_ids + text_ids + tail_ids
        ids = prompt_ids + answer
        items.append({"input_ids": ids, "attention_mask": [1] * len(ids),
                      "labels": [-100] * len(prompt_ids) + answer})
    return ListDataset(items)


class CausalCollator:
    """Right-pads input_ids (pad id), attention_mask (0) and labels (-100)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        out = {"input_ids": [], "attention_mask": [], "labels": []}
        for b in batch:
            pad = width - len(b["input_ids"])
            out["input_ids"].append(b["input_ids"] + [self.pad_id] * pad)
            out["attention_mask"].append(b["attention_mask"] + [0] * pad)
            out["labels"].append(b["labels"] + [-100] * pad)
        return {k: torch.tensor(v) for k, v in out.items()}


def class_scores_from_lm_logits(class_token_ids: list[int]):
    """``preprocess_logits_for_metrics`` for causal-LM classification: keep, per example, the logits of the
    label words at the position that predicts the first answer token -> (batch, num_labels)."""
    index = torch.tensor(class_token_ids)

    def preprocess(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if isinstance(logits, tuple):
            logits = logits[0]
        first = (labels != -100).int().argmax(dim=1)  # first answer position
        rows = torch.arange(logits.shape[0], device=logits.device)
        return logits[rows, (first - 1).clamp(min=0)][:, index.to(logits.device)]

    return preprocess


def make_causal_compute_metrics(class_token_ids: list[int]):
    lookup = {t: i for i, t in enumerate(class_token_ids)}

    def compute_metrics(eval_pred) -> dict[str, float]:
        scores, labels = eval_pred.predictions, eval_pred.label_ids
        first = (labels != -100).argmax(axis=1)
        truth = [lookup.get(int(labels[i, j]), -1) for i, j in enumerate(first)]
        return classification_metrics(scores, truth, len(class_token_ids))

    return compute_metrics


# ------------------------------------------------------------------------------------------------ trainer


def make_early_stopping(patience: int):
    from transformers import EarlyStoppingCallback

    class ResettingEarlyStopping(EarlyStoppingCallback):
        """EarlyStoppingCallback whose patience counter restarts with every training (search trials)."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.early_stopping_patience_counter = 0
            return super().on_train_begin(args, state, control, **kwargs)

    return ResettingEarlyStopping(early_stopping_patience=patience)


def steps_plan(cfg: FinetuneConfig, n_train: int) -> tuple[int, int]:
    """(total optimizer steps, eval/save interval in steps)."""
    per_epoch = max(1, math.ceil(n_train / cfg.batch_size))
    total = cfg.max_steps if cfg.max_steps and cfg.max_steps > 0 else math.ceil(per_epoch * cfg.epochs)
    every = cfg.eval_steps or max(1, per_epoch // max(1, cfg.evals_per_epoch))
    return total, min(every, total)


def training_arguments(cfg: FinetuneConfig, output_dir: str | os.PathLike[str], n_train: int, **overrides: Any):
    from transformers import TrainingArguments

    total, every = steps_plan(cfg, n_train)
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        max_steps=total,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=round(cfg.warmup_ratio * total),
        lr_scheduler_type="linear",
        eval_strategy="steps",
        eval_steps=every,
        save_strategy="steps",
        save_steps=every,
        save_total_limit=1,
        save_only_model=True,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=every,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        disable_tqdm=not cfg.progress,
        dataloader_num_workers=0,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        use_cpu=not torch.cuda.is_available(),
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


@dataclass
class Prepared:
    """A loaded, prepared model with its tokenised splits and Trainer pieces."""

    loaded: LoadedModel
    model: nn.Module
    info: ParameterInfo
    shape: Any
    data: TextData
    datasets: dict[str, ListDataset]
    collator: Any
    compute_metrics: Any
    preprocess_logits: Any = None


def load_task_data(cfg: FinetuneConfig) -> TextData:
    return load_data(cfg.data, cfg.train_size, cfg.val_size, cfg.test_size)


def prepare(cfg: FinetuneConfig, data: TextData | None = None, loaded: LoadedModel | None = None) -> Prepared:
    """Load data and model, apply the method, tokenise. Seeds torch first so the head/core init repeats."""
    from transformers import DataCollatorWithPadding, set_seed

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = data if data is not None else load_task_data(cfg)
    set_seed(cfg.seed)
    loaded = loaded or load_model(cfg.model, cfg.task, num_labels=data.num_labels)
    model, info, shape = apply_method(loaded.model, cfg)
    tok = loaded.tokenizer
    if cfg.task == "seq-cls":
        datasets = {s: tokenize_classification(data.split(s), tok, cfg.max_length) for s in ("train", "val", "test")}
        collator = DataCollatorWithPadding(tok)
        compute_metrics, preprocess = make_compute_metrics(data.num_labels), None
    else:
        words = label_words(data.label_names, tok)
        datasets = {s: tokenize_causal(data.split(s), tok, cfg.max_length, data.label_names, cfg.prompt)
                    for s in ("train", "val", "test")}
        collator = CausalCollator(tok.pad_token_id)
        compute_metrics, preprocess = make_causal_compute_metrics(words), class_scores_from_lm_logits(words)
    for split in ("val", "test"):  # evaluation order does not change the metrics; sorted batches pad less
        datasets[split].items.sort(key=lambda item: len(item["input_ids"]))
    return Prepared(loaded, model, info, shape, data, datasets, collator, compute_metrics, preprocess)


def _is_head_parameter(name: str, heads: list[str]) -> bool:
    return any(name.startswith(h + ".") or f".{h}." in name for h in heads)


def recipe_trainer_class():
    """``transformers.Trainer`` with one addition: an optional separate learning rate for the task head.

    TT-LoRA's update is ``alpha * (product of cores)``, so with Adam one step moves ΔW by about alpha·lr per
    entry, far more than LoRA's (alpha/r)·B·A at the same lr; the adapters want a small lr while a freshly
    initialised head wants a large one. ``head_lr`` gives the head its own parameter group (same schedule).
    """
    from transformers import Trainer

    class RecipeTrainer(Trainer):
        def __init__(self, *args: Any, head_lr: float | None = None, head_names: list[str] | None = None,
                     **kwargs: Any) -> None:
            self.head_lr = head_lr
            self.head_names = head_names or []
            super().__init__(*args, **kwargs)

        def create_optimizer(self, model=None):
            optimizer = super().create_optimizer(model)
            if self.head_lr is None or not self.head_names or getattr(optimizer, "_recipe_split", False):
                return optimizer
            opt_model = self.model if model is None else model
            head_ids = {id(p) for n, p in opt_model.named_parameters() if _is_head_parameter(n, self.head_names)}
            extra = []
            for group in optimizer.param_groups:
                head = [p for p in group["params"] if id(p) in head_ids]
                if head:
                    group["params"] = [p for p in group["params"] if id(p) not in head_ids]
                    extra.append({**{k: v for k, v in group.items() if k != "params"}, "params": head,
                                  "lr": self.head_lr})
            for group in extra:
                optimizer.add_param_group(group)
            optimizer._recipe_split = True
            return optimizer

    return RecipeTrainer


def build_trainer(cfg: FinetuneConfig, prep: Prepared, output_dir: str | os.PathLike[str],
                  callbacks_extra: list[Any] | None = None, **kwargs: Any):
    """The HF Trainer of the recipe (pass ``model_init=`` for a hyperparameter search)."""
    args = training_arguments(cfg, output_dir, len(prep.datasets["train"]))
    heads = head_modules(_inner_model(prep.model)) if cfg.task == "seq-cls" else []
    return recipe_trainer_class()(
        head_lr=cfg.head_lr,
        head_names=heads,
        model=prep.model if "model_init" not in kwargs else None,
        args=args,
        train_dataset=prep.datasets["train"],
        eval_dataset=prep.datasets["val"],
        data_collator=prep.collator,
        processing_class=prep.loaded.tokenizer,
        compute_metrics=prep.compute_metrics,
        preprocess_logits_for_metrics=prep.preprocess_logits,
        callbacks=[make_early_stopping(cfg.patience), *(callbacks_extra or [])],
        **kwargs,
    )


# ------------------------------------------------------------------------------------------------ the recipe


def _strip(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    skip = ("_runtime", "_per_second", "epoch")
    return {k[len(prefix) + 1 :]: float(v) for k, v in metrics.items()
            if k.startswith(prefix + "_") and not k.endswith(skip)}


def save_trained(model: nn.Module, cfg: FinetuneConfig, info: ParameterInfo, out: Path) -> Path:
    """Save what trained: the ttkernels adapter, the PEFT adapter, or the trainable tensors (head/full)."""
    out.mkdir(parents=True, exist_ok=True)
    if cfg.method == "tt":
        ttkernels.save_adapter(model, out)
    elif cfg.method == "lora":
        model.save_pretrained(out)
    else:
        from safetensors.torch import save_file

        tensors = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(tensors, str(out / "trainable.safetensors"))
    return out


# How a run trains, beyond the split sizes and the training length in steps (which the record keeps anyway): a
# run record keeps these too, so that runs of different protocols are not paired or resumed as one (records
# written before they were kept lack them).
TRAINING_FIELDS = ("max_length", "epochs", "batch_size", "warmup_ratio", "evals_per_epoch", "eval_steps", "patience",
                   "group_by_length")


def training_settings(cfg: FinetuneConfig) -> dict[str, Any]:
    """``cfg``'s :data:`TRAINING_FIELDS`, as a run record keeps them."""
    return {f: getattr(cfg, f) for f in TRAINING_FIELDS}


def method_settings(cfg: FinetuneConfig) -> dict[str, Any]:
    """The settings a run record keeps for ``cfg``'s method (None where the method has none: LoRA's rank, alpha
    and dropout under the TT names; targets None for the model type's default)."""
    tt, lora = cfg.method == "tt", cfg.method == "lora"
    return {
        "learning_rate": cfg.lr, "head_lr": cfg.head_lr, "weight_decay": cfg.weight_decay,
        "rank": cfg.rank if tt else (cfg.lora_r if lora else None),
        "alpha": cfg.alpha if tt else (cfg.lora_alpha if lora else None),
        "dropout": cfg.dropout if tt else (cfg.lora_dropout if lora else None),
        "init": cfg.init if tt else None,
        "init_scale": cfg.init_scale if tt else None,
        "targets": ([cfg.targets] if isinstance(cfg.targets, str) else list(cfg.targets))
        if cfg.targets and (tt or lora) else None,
    }


def finetune(cfg: FinetuneConfig, data: TextData | None = None, loaded: LoadedModel | None = None,
             verbose: bool = True) -> dict[str, Any]:
    """Run the recipe once; return a flat record of the configuration, parameter counts, metrics and times."""
    start = time.perf_counter()
    prep = prepare(cfg, data, loaded)
    out = Path(cfg.output_dir)
    say = print if verbose else (lambda *a, **k: None)
    info = prep.info
    say(f"[{cfg.method}] {prep.loaded.description} | {prep.data.description} | {prep.data.sizes()}")
    say(f"[{cfg.method}] trainable parameters: {info.trainable_params:,} of {info.total_params:,} "
        f"({100 * info.trainable_params / info.total_params:.3f}%); adapter (excl. head): {info.adapter_params:,}; "
        f"head: {info.head_params:,}; saved size at 16 bit: {info.adapter_kb:.1f} KB")
    trainer = build_trainer(cfg, prep, out / "checkpoints")
    before = {}
    if cfg.evaluate_before:
        before = _strip(trainer.evaluate(prep.datasets["test"], metric_key_prefix="test"), "test")
    t0 = time.perf_counter()
    train_out = trainer.train()
    train_time = time.perf_counter() - t0
    best_val = _strip(trainer.evaluate(metric_key_prefix="eval"), "eval")
    test = _strip(trainer.evaluate(prep.datasets["test"], metric_key_prefix="test"), "test")
    adapter_dir = None
    if cfg.save_adapter:
        adapter_dir = str(save_trained(trainer.model, cfg, info, out / "adapter"))
    if not cfg.keep_checkpoints:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    state = trainer.state
    record: dict[str, Any] = {
        "method": cfg.method, "model": cfg.model, "data": cfg.data, "task": cfg.task, "seed": cfg.seed,
        **method_settings(cfg), "shape": shape_label(prep.shape) if cfg.method == "tt" else None,
        "train_size": len(prep.datasets["train"]), "val_size": len(prep.datasets["val"]),
        "test_size": len(prep.datasets["test"]), **training_settings(cfg),
        "adapter_params": info.adapter_params, "head_params": info.head_params,
        "trainable_params": info.trainable_params, "total_params": info.total_params,
        "adapter_bytes_fp16": info.adapter_bytes,
        "steps": state.global_step, "max_steps": state.max_steps,
        "best_step": _step_of(state.best_model_checkpoint), "best_val_loss": state.best_metric,
        "stopped_early": state.global_step < state.max_steps,
        "train_time_s": train_time, "train_loss": train_out.training_loss,
        "wall_time_s": time.perf_counter() - start,
        "adapter_dir": adapter_dir, "torch_threads": torch.get_num_threads(),
    }
    record.update({f"before_{k}": v for k, v in before.items()})
    record.update({f"val_{k}": v for k, v in best_val.items()})
    record.update({f"test_{k}": v for k, v in test.items()})
    if before:
        say(f"[{cfg.method}] before: accuracy {before['accuracy']:.4f}, macro-F1 {before['f1']:.4f}")
    say(f"[{cfg.method}] after:  accuracy {test['accuracy']:.4f}, macro-F1 {test['f1']:.4f} "
        f"(test, best val loss {state.best_metric:.4f} at step {record['best_step']}/{state.global_step}, "
        f"train {train_time:.0f} s)")
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps({"config": cfg.to_dict(), "result": record}, indent=2) + "\n")
    return record


def _step_of(checkpoint: str | None) -> int | None:
    if not checkpoint:
        return None
    try:
        return int(str(checkpoint).rstrip("/").rsplit("-", 1)[-1])
    except ValueError:
        return None

