"""Checks of the benchmark tooling itself (not benchmarks: ``--benchmark-only`` skips them, CI runs them).

The floor model reproduces perf-notes §3; the report renders the committed results; gpu_check.sh parses.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from . import report
from .floor import cost, floors, perf_notes_check
from .shapes import BENCH_SETS, SHAPES, cases

HERE = Path(__file__).resolve().parent
H100 = (3.0e12, 800e12)  # perf-notes §3.3: bandwidth, bf16 dense rate


def _ratio(provider: str, mode: str, shape: str, tokens: int = 8192) -> float:
    spec = SHAPES[shape]
    return floors(provider, mode, spec, tokens, 2, *H100)[1] / floors("base", mode, spec, tokens, 2, *H100)[1]


def test_floor_model_matches_perf_notes() -> None:
    assert perf_notes_check()["ok"]
    assert _ratio("peft_lora_r8", "fwd", "llama.q-4096") == pytest.approx(1.46, abs=0.01)
    assert _ratio("peft_lora_r8", "train", "llama.q-4096") == pytest.approx(1.52, abs=0.01)
    assert _ratio("tt_einsum", "fwd", "llama.q-4096") == pytest.approx(1.54, abs=0.01)
    assert _ratio("tt_einsum", "train", "llama.q-4096") == pytest.approx(1.65, abs=0.01)
    assert _ratio("tt_triton", "fwd", "llama.q-4096") == pytest.approx(1.065, abs=0.005)
    assert _ratio("tt_triton", "train", "llama.q-4096") == pytest.approx(1.10, abs=0.01)
    assert _ratio("tt_triton", "fwd", "llama3.v-4096to1024") == pytest.approx(1.26, abs=0.01)
    base = floors("base", "fwd", SHAPES["llama.q-4096"], 8192, 2, *H100)[0]
    assert base * 1e6 == pytest.approx(343.6, abs=0.5)


def test_merged_costs_the_base_forward() -> None:
    spec = SHAPES["roberta.qv-768"]
    for provider in ("peft_lora_r8", "tt_torch"):
        assert cost(provider, "merged", spec, 16, 4) == cost("base", "fwd", spec, 16, 4)


def test_sets_name_registered_shapes() -> None:
    for name in BENCH_SETS:
        assert cases(name), name


def _latest_result() -> Path | None:
    found = sorted((HERE / "results").glob("*.json"))
    return found[-1] if found else None


def test_report_renders_committed_results(tmp_path: Path) -> None:
    path = _latest_result()
    if path is None:
        pytest.skip("no committed results under benchmarks/results/")
    data = json.loads(path.read_text())
    text = report.render_markdown(data, source=path.name)
    assert "time ÷ base F.linear" in text and "time ÷ PEFT LoRA r=8" in text
    assert "Command" in text and "Versions" in text
    assert "ttk torch" in report.render_compact(data)
    pytest.importorskip("matplotlib")
    report.render_plot(data, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 10_000


def test_report_handles_missing_providers() -> None:
    data = {
        "benchmarks": [
            {
                "stats": {"median": 2e-3, "iqr": 1e-4, "rounds": 5},
                "extra_info": {
                    "provider": p,
                    "shape": "x",
                    "tt_shape": [2, 2],
                    "rank": 1,
                    "tokens": 1,
                    "mode": "fwd",
                    "params": 4,
                    "adapter_bytes_16bit": 8,
                    "peak_mem_bytes": 0,
                    "method": "",
                    "floor_us": None,
                },
            }
            for p in ("base", "tt_torch")
        ]
    }
    text = report.render_markdown(data)
    assert "| x [2,2] r1 | 1 | 1.00× |" in text  # ttk torch ÷ base
    assert "| x [2,2] r1 | 1 | — | — |" in text  # ÷ PEFT LoRA r=8: not measured


def test_gpu_check_script_parses() -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not found")
    subprocess.run([bash, "-n", str(HERE / "gpu_check.sh")], check=True)


def test_benchmark_json_path_accepts_a_path_or_an_open_file(tmp_path: Path) -> None:
    """pytest-benchmark hands --benchmark-json over as a str (older) or an open binary file (seen on the H200 image)."""
    from .conftest import benchmark_json_path

    target = tmp_path / "r.json"
    assert benchmark_json_path(None) is None
    assert benchmark_json_path(str(target)) == target
    with open(target, "wb") as f:
        f.write(b'{"benchmarks": []}')
        assert benchmark_json_path(f) == target
        assert json.loads(target.read_text()) == {"benchmarks": []}  # flushed before the report reads it
    assert f.closed and benchmark_json_path(f) == target  # 5.2 closes it before the terminal summary (H200 run 2)


def test_host_cost_measures_every_row_on_cpu() -> None:
    from .host_cost import main

    rows = main(["--dim", "64", "--shape", "8,8,8,8", "--rank", "2", "--dtype", "float32", "--calls", "5",
                 "--backends", "torch", "--device", "cpu"])  # fmt: skip
    labels = [label for label, _ in rows]
    assert labels[:2] == ["one elementwise op (16 floats)", "F.linear 64x64"]
    assert "TTLinear torch forward (no grad)" in labels and "TTLinear torch training step" in labels
    assert all(us > 0 for _, us in rows)


def test_host_cost_profile_names_the_python_and_op_hot_spots_on_cpu() -> None:
    from .host_cost import profile_training_step

    torch.manual_seed(0)
    base = torch.nn.Linear(64, 64, bias=False)
    text = profile_training_step(base, torch.randn(1, 64), [8, 8, 8, 8], 2, "torch", steps=5, top=200)
    python_part, ops_part = text.split("torch ops by self host time")
    assert "ops/contract.py" in python_part and "contract_left" in python_part  # the factor chain is profiled
    counts = {line.split(maxsplit=2)[2]: float(line.split()[0]) for line in ops_part.splitlines()[2:]}
    # [8,8,8,8] splits 2+2: one mm per side forward, two per side backward (+ the op's own GEMMs)
    assert counts["aten::mm"] >= 6 and counts["torch::autograd::AccumulateGrad"] == 4.0
