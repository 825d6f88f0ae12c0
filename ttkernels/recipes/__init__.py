"""Recipes on real models: data/model loaders, the HF-Trainer fine-tuning recipe, HyperBand search, plots.

    from ttkernels.recipes import FinetuneConfig, finetune
    record = finetune(FinetuneConfig(method="tt", model="minilm", data="tweets"))

Command line: ``python -m ttkernels.recipes {finetune,compare,search,plot} --help``.
Needs the ``tune`` extra (transformers, accelerate, optuna, scikit-learn, scipy, matplotlib, gguf) and, for
the ``lora`` baseline, ``peft``.
"""

from __future__ import annotations

from .data import DATASETS, MissingPackageError, TextData, load_data
from .finetune import DEFAULT_LR, METHODS, FinetuneConfig, finetune
from .metrics import classification_metrics, regression_metrics
from .models import MODELS, load_model

__all__ = [
    "DATASETS",
    "DEFAULT_LR",
    "METHODS",
    "MODELS",
    "FinetuneConfig",
    "MissingPackageError",
    "TextData",
    "classification_metrics",
    "finetune",
    "load_data",
    "load_model",
    "regression_metrics",
]
