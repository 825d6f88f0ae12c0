"""The paper's evaluation metrics, computed with scikit-learn / scipy (nothing is downloaded).

Classification: accuracy, macro-F1 (``f1``; for two classes also ``f1_binary``, the positive-class F1 that GLUE
reports for MRPC/QQP) and Matthews correlation (``mcc``, CoLA). Regression (one output): Spearman and Pearson
correlation (STS-B).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def classification_metrics(predictions: Any, labels: Any, num_labels: int | None = None) -> dict[str, float]:
    """Metrics of predicted class ids (or logits, argmax'ed over the last axis) against true class ids."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    preds = np.asarray(predictions)
    if preds.ndim > 1:
        preds = preds.argmax(-1)
    y = np.asarray(labels).reshape(-1)
    preds = preds.reshape(-1)
    classes = list(range(num_labels)) if num_labels else sorted(set(y.tolist()) | set(preds.tolist()))
    out = {
        "accuracy": float(accuracy_score(y, preds)),
        "f1": float(f1_score(y, preds, labels=classes, average="macro", zero_division=0)),
        "mcc": float(matthews_corrcoef(y, preds)) if len(y) else 0.0,
    }
    if len(classes) == 2:
        out["f1_binary"] = float(f1_score(y, preds, labels=classes, pos_label=classes[1], zero_division=0))
    return out


def regression_metrics(predictions: Any, labels: Any) -> dict[str, float]:
    """Spearman and Pearson correlation of scores (STS-B style)."""
    from scipy.stats import pearsonr, spearmanr

    p = np.asarray(predictions, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    return {"spearman": float(spearmanr(p, y).statistic), "pearson": float(pearsonr(p, y).statistic)}


def make_compute_metrics(num_labels: int):
    """A ``compute_metrics`` for the HF Trainer: regression metrics when num_labels == 1, else classification.

    For causal-LM classification the predictions are already (batch, num_labels) class scores and the
    labels (batch,) class ids (see :func:`ttkernels.recipes.finetune.class_scores_from_lm_logits`).
    """

    def compute_metrics(eval_pred) -> dict[str, float]:
        predictions, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(predictions, tuple):
            predictions = predictions[0]
        if isinstance(labels, tuple):
            labels = labels[-1]
        if num_labels == 1:
            return regression_metrics(predictions, labels)
        return classification_metrics(predictions, labels, num_labels)

    return compute_metrics
