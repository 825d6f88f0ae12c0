"""The GPU config diagnostic (benchmarks/gpu_diag_configs.py) runs, and reports a worker that dies, on CPU too."""

from __future__ import annotations

import time

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed")

from .gpu_diag_configs import _run_group

CASE = {
    "shape": [5, 8, 12, 2], "dtype": "float16", "design": "dx_g_in_loop",
    "fused": {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 1, "num_warps": 4, "num_stages": 2},
}  # fmt: skip


def test_diag_group_checks_each_config_and_survives_a_dead_case(monkeypatch: pytest.MonkeyPatch) -> None:
    if not torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "1")  # the workers are fresh processes
    broken = dict(CASE, dtype="no_such_dtype")
    fwd = dict(CASE, design="fwd_z_in_loop")
    results = _run_group([CASE, broken, fwd], time.time() + 120)
    assert [r["status"] for r in results] == ["ok", "error", "ok"]
    assert "no_such_dtype" in results[1]["why"]
    assert all(r["rel_err"] < 5e-3 for r in (results[0], results[2]))


def test_diag_exit_status_covers_the_designs_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    from ttkernels.ops.triton import configs

    from .gpu_diag_configs import DESIGNS, _groups, in_use

    monkeypatch.setenv(configs.BWD_G_IN_LOOP_ENV, "0")
    assert [d for d in DESIGNS if not in_use(d)] == ["dx_g_in_loop", "dx_no_dA"]
    monkeypatch.delenv(configs.BWD_G_IN_LOOP_ENV)  # the default
    assert all(in_use(d) for d in DESIGNS)
    groups = _groups(["dx_g_prepass"])
    assert groups and all(case["design"] == "dx_g_prepass" for group in groups for case in group)


def test_diag_case_cut_by_the_budget_is_not_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from . import gpu_diag_configs

    outputs = iter([
        # the first worker finished one case and was killed by the budget inside the second ...
        'START 0\nRESULT 0 {"rel_err": 1e-4, "s": 0.1}\nSTART 1\n',
        # ... and the next one while it was still importing, before its first case
        "",
    ])

    def ran_out(cmd: list[str], **kwargs: object) -> None:
        raise subprocess.TimeoutExpired(cmd, 1.0, output=next(outputs))

    monkeypatch.setattr(gpu_diag_configs.subprocess, "run", ran_out)
    group = [CASE, dict(CASE, design="dx_g_prepass"), dict(CASE, design="fwd_z_in_loop"),
             dict(CASE, design="fwd_z_prepass")]  # fmt: skip
    results = _run_group(group, time.time() + 60)
    assert [(r["design"], r["status"]) for r in results] == [
        ("dx_g_in_loop", "ok"), ("dx_g_prepass", "cut"), ("fwd_z_in_loop", "skipped"), ("fwd_z_prepass", "skipped")
    ]  # fmt: skip
    assert results[1]["why"] == "the budget ended while it ran"
    assert gpu_diag_configs.failures(results) == []
    # what does fail the run: a wrong or faulting config in a design the library launches
    wrong = dict(results[0], status="WRONG")
    fault = dict(results[0], status="FAULT", design="fwd_z_prepass")
    assert gpu_diag_configs.failures([*results, wrong, fault]) == [wrong, fault]
    monkeypatch.setattr(gpu_diag_configs, "in_use", lambda design: design != "dx_g_in_loop")
    assert gpu_diag_configs.failures([*results, wrong, fault]) == [fault]
