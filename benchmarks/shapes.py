"""Registry of real layer shapes (named after their models) x token counts, and the benchmark sets.

Each :class:`LayerSpec` is one adapted projection: ``nn.Linear(n, m)`` (in_features n, out_features m) with a
TT-LoRA shape (output modes first, row-major, as :mod:`ttkernels.shapes` defines it) and rank. Projections that
are the same computation are listed once: LLaMA-2-7B q/v and LLaMA-3-8B q are all 4096x4096 with [16]*6 rank 5.

Sets (``TTKERNELS_BENCH`` or ``--bench-set``):

``quick``  default on CPU: the 768x768 shapes and LLaMA-3-8B v (4096->1024) at T in {1, 16, 2048}.
``full``   default when CUDA is available (the Hopper set): every shape at T in {1, 16, 2048, 8192}.
``smoke``  used automatically with ``--benchmark-disable`` (CI): the smallest shapes, one token count each,
           so that every benchmark body runs once in seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MODES = ("fwd", "train", "merged")
MODE_TITLES = {
    "fwd": "forward (adapter unmerged, no grad)",
    "train": "forward+backward (one layer's training step)",
    "merged": "merged inference (adapter folded into W)",
}


@dataclass(frozen=True)
class LayerSpec:
    name: str  # short id used in group names, e.g. "roberta.qv-768x768"
    model: str  # where this projection comes from (human readable)
    n: int  # in_features
    m: int  # out_features
    tt_shape: tuple[int, ...]
    rank: int
    bias: bool
    note: str = ""

    @property
    def label(self) -> str:
        shape = ",".join(str(k) for k in self.tt_shape)
        return f"{self.name} [{shape}] r{self.rank}"


SHAPES: dict[str, LayerSpec] = {
    s.name: s
    for s in (
        LayerSpec(
            "roberta.qv-768",
            "RoBERTa/DeBERTa-base q,v (768x768)",
            768,
            768,
            (12, 8, 8, 8, 8, 12),
            5,
            True,
            "TT-LoRA paper shape",
        ),
        LayerSpec(
            "roberta.qv-768-dense",
            "RoBERTa/DeBERTa-base q,v (768x768)",
            768,
            768,
            (64, 16, 9, 64),
            5,
            True,
            "paper shape with no in/out boundary: TTLinear runs the dense-ΔW path",
        ),
        LayerSpec(
            "llama.q-4096",
            "LLaMA-2-7B q,v / LLaMA-3-8B q (4096x4096)",
            4096,
            4096,
            (16,) * 6,
            5,
            False,
            "TT-LoRA paper shape for LLaMA",
        ),
        LayerSpec(
            "llama3.v-4096to1024",
            "LLaMA-3-8B v (GQA, nn.Linear(4096, 1024))",
            4096,
            1024,
            (16, 8, 8, 16, 16, 16),
            5,
            False,
            "output modes [16,8,8] | input modes [16,16,16]",
        ),
    )
}


@dataclass(frozen=True)
class BenchSet:
    name: str
    cases: tuple[tuple[str, tuple[int, ...]], ...]  # (shape name, token counts)
    description: str = ""


BENCH_SETS: dict[str, BenchSet] = {
    "quick": BenchSet(
        "quick",
        (
            ("roberta.qv-768", (1, 16, 2048)),
            ("roberta.qv-768-dense", (1, 16, 2048)),
            ("llama3.v-4096to1024", (1, 16, 2048)),
        ),
        "768x768 (both paper shapes) and 4096->1024 at T in {1, 16, 2048}",
    ),
    "full": BenchSet(
        "full",  # headline shapes first: under a time budget (TTKERNELS_BENCH_DEADLINE) they run before the rest
        tuple(
            (name, (1, 16, 2048, 8192))
            for name in ("llama.q-4096", "llama3.v-4096to1024", "roberta.qv-768", "roberta.qv-768-dense")
        ),
        "every registered shape at T in {1, 16, 2048, 8192} (decode and prefill/training)",
    ),
    "smoke": BenchSet(
        "smoke",
        (("roberta.qv-768", (16,)), ("roberta.qv-768-dense", (16,)), ("llama3.v-4096to1024", (1,))),
        "smallest shapes, one token count (CI smoke run with --benchmark-disable)",
    ),
}


def default_set_name(cuda: bool, benchmark_disabled: bool) -> str:
    """The set to run: smoke when timing is disabled; else TTKERNELS_BENCH, else full on CUDA and quick on CPU."""
    if benchmark_disabled:
        return "smoke"
    env = os.environ.get("TTKERNELS_BENCH", "").strip().lower()
    if env:
        if env not in BENCH_SETS:
            raise ValueError(f"TTKERNELS_BENCH={env!r}; valid values are {', '.join(BENCH_SETS)}")
        return env
    return "full" if cuda else "quick"


def cases(set_name: str) -> list[tuple[LayerSpec, int]]:
    """(layer spec, token count) pairs of a set, in a stable order."""
    bench_set = BENCH_SETS[set_name]
    return [(SHAPES[name], t) for name, tokens in bench_set.cases for t in tokens]
