"""TTConfig: everything that defines a TT-LoRA adapter for a model, JSON round-trippable."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from .backends import validate_backend_name
from .errors import SettingError
from .utils import validate_alpha, validate_dropout, validate_init, validate_init_scale

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}

#: Default targets by ``model.config.model_type`` (the attention query/value projections, as in the paper).
DEFAULT_TARGETS: dict[str, list[str]] = {
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "electra": ["query", "value"],
    "deberta-v2": ["query_proj", "value_proj"],
    "deberta": ["in_proj"],
    "gpt2": ["c_attn"],
    "distilbert": ["q_lin", "v_lin"],
}


@dataclass
class TTConfig:
    """How to patch a model with TT-LoRA. See the README's "The maths" for the conventions."""

    targets: list[str] | str | None = field(
        default=None,
        metadata={"help": "Module-name suffixes (list) or one regular expression (str, full match). "
                  "None: the default for the model type (DEFAULT_TARGETS)."},
    )
    rank: int | list[int] | str | dict[str, int | list[int] | str] = field(
        default=5, metadata={"help": "TT rank: one int, the d-1 inner ranks, 'r/R' (r on every bond, R on the "
                                  "output/input bond), or a dict target -> rank."}
    )
    alpha: float = field(default=8.0, metadata={"help": "Scale of ΔW: y = W0 x + alpha * ΔW x (not divided by r)."})
    shape: list[int] | dict[str, list[int] | None] | None = field(
        default=None,
        metadata={"help": "TT shape (∏ = m*n), a dict target -> shape, or None for the automatic factorisation."},
    )
    init: str = field(default="zero", metadata={
        "help": "'zero' (ΔW = 0 at step 0), 'gaussian' (the paper's) or 'orthogonal' (ΔW = 0, orthogonal cores)."})
    init_scale: float = field(default=1.0, metadata={
        "help": "Multiplies the initial cores (see TTLinear): < 1 makes the non-zero cores train relatively faster."})
    dropout: float = field(
        default=0.0, metadata={"help": "Dropout on the TT path's input in training (like PEFT's lora_dropout)."}
    )
    strict: bool = field(default=False, metadata={"help": "Refuse shapes that need the dense ΔW path."})
    modules_to_save: list[str] | None = field(
        default=None, metadata={"help": "Module-name suffixes kept trainable and saved with the adapter (e.g. a head)."}
    )
    exclude: list[str] | None = field(default=None, metadata={"help": "Module-name suffixes never patched."})
    core_dtype: str = field(default="float32", metadata={"help": "dtype of the cores, whatever the base dtype."})
    backend: str | None = field(default=None, metadata={"help": "None/'auto', 'torch', 'triton' or 'cuda'."})

    def __post_init__(self) -> None:
        self.alpha = validate_alpha(self.alpha, "TTConfig")
        self.init = validate_init(self.init, "TTConfig")
        self.init_scale = validate_init_scale(self.init_scale, "TTConfig")
        self.dropout = validate_dropout(self.dropout, "TTConfig")
        if self.core_dtype not in _DTYPES:
            raise SettingError(f"core_dtype must be one of {sorted(_DTYPES)}, got {self.core_dtype!r}")
        if self.backend is not None:
            self.backend = validate_backend_name(self.backend)
        if isinstance(self.targets, (list, tuple)):
            if not self.targets or not all(isinstance(t, str) and t for t in self.targets):
                raise SettingError(f"targets must be a non-empty list of module-name suffixes, got {self.targets!r}")
            self.targets = list(self.targets)
        elif self.targets is not None and not isinstance(self.targets, str):
            raise TypeError(f"targets must be a list of names, a regex string or None, got {type(self.targets)}")
        for name in ("modules_to_save", "exclude"):
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, [value])

    @property
    def torch_core_dtype(self) -> torch.dtype:
        return _DTYPES[self.core_dtype]

    def _lookup(self, table: Any, module_name: str, target: str | None) -> Any:
        if not isinstance(table, dict):
            return table
        for key in (module_name, target):
            if key is not None and key in table:
                return table[key]
        for key, value in table.items():  # suffix keys
            if module_name.endswith("." + key) or module_name == key:
                return value
        return None

    def shape_for(self, module_name: str, target: str | None) -> list[int] | None:
        return self._lookup(self.shape, module_name, target)

    def rank_for(self, module_name: str, target: str | None) -> int | list[int]:
        rank = self._lookup(self.rank, module_name, target)
        if rank is None:
            raise ValueError(f"rank dict {self.rank!r} has no entry for module {module_name!r}")
        return rank

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # fields at their default are left out, so the files stay readable by versions that predate them
        if not data["dropout"]:
            del data["dropout"]
        if data["init_scale"] == 1.0:
            del data["init_scale"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TTConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SettingError(f"unknown TTConfig fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)
