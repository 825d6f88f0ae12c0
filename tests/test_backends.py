"""Backend selection: precedence, clear errors for unavailable backends, info()."""

import logging

import pytest
import torch

import ttkernels
from ttkernels import BackendUnavailableError, SettingError, backends
from ttkernels.ops import tt_linear


def _args():
    return torch.randn(3, 8), torch.randn(4, 8), None, torch.randn(2, 8), torch.randn(4, 2)


def test_precedence_argument_over_context_over_env(monkeypatch):
    monkeypatch.setattr(backends, "_ENV_BACKEND", "triton")
    assert backends.requested_backend() == "triton"
    with ttkernels.use_backend("cuda"):
        assert backends.requested_backend() == "cuda"
        assert backends.requested_backend("torch") == "torch"
        assert backends.requested_backend("auto") == "cuda"
    ttkernels.set_backend("torch")
    assert backends.requested_backend() == "torch"
    ttkernels.set_backend(None)
    assert backends.requested_backend() == "triton"


def test_unknown_backend_names_are_rejected():
    with pytest.raises(SettingError, match="unknown backend 'tpu'; valid names are auto, torch, triton, cuda"):
        ttkernels.set_backend("tpu")
    with pytest.raises(ValueError, match="TTKERNELS_BACKEND"):
        backends.validate_backend_name("fast", what="TTKERNELS_BACKEND")


def test_env_variable_is_validated_at_import(monkeypatch):
    monkeypatch.setenv("TTKERNELS_BACKEND", "Torch ")
    assert backends._env_backend() == "torch"
    monkeypatch.setenv("TTKERNELS_BACKEND", "gpu")
    with pytest.raises(ValueError, match="unknown TTKERNELS_BACKEND 'gpu'"):
        backends._env_backend()


@pytest.mark.parametrize(
    "value, expected", [(None, "default"), ("", "default"), (" ON ", True), ("Yes", True), ("1", True),
                        ("off", False), ("FALSE", False), ("0", False), ("no", False)],
)  # fmt: skip
def test_boolean_switches_read_the_usual_words(monkeypatch, value, expected):
    from ttkernels.utils import env_flag

    if value is None:
        monkeypatch.delenv("TTKERNELS_SOME_SWITCH", raising=False)
    else:
        monkeypatch.setenv("TTKERNELS_SOME_SWITCH", value)
    for default in (False, True):
        assert env_flag("TTKERNELS_SOME_SWITCH", default=default) is (default if expected == "default" else expected)


def test_a_boolean_switch_with_another_value_is_a_clear_error(monkeypatch):
    from ttkernels.utils import env_flag

    monkeypatch.setenv("TTKERNELS_SOME_SWITCH", "2")
    with pytest.raises(ValueError, match=r"TTKERNELS_SOME_SWITCH='2' is not a boolean: use one of 1/true/yes/on"):
        env_flag("TTKERNELS_SOME_SWITCH", default=True)


def test_auto_on_cpu_runs_torch():
    x, W, b, A, B = _args()
    assert backends.select("auto", x, A, B, b).NAME == "torch"
    tt_linear(x, W, b, A, B, 1.0)
    assert "torch" in ttkernels.info()["chosen"].values()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only failure message")
def test_forcing_cuda_on_cpu_is_a_clear_error():
    x, W, b, A, B = _args()
    with pytest.raises(BackendUnavailableError, match="backend 'cuda' was requested but cannot run on cpu"):
        tt_linear(x, W, b, A, B, 1.0, backend="cuda")


def test_forcing_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    if backends.backend_status("triton") is not None:
        pytest.skip(f"triton unavailable: {backends.backend_status('triton')}")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, W, b, A, B = _args()
    with pytest.raises(BackendUnavailableError, match=r"(?i)TRITON_INTERPRET"):
        tt_linear(x, W, b, A, B, 1.0, backend="triton")


def test_triton_float64_is_refused_with_reason():
    if backends.backend_status("triton") is not None:
        pytest.skip(f"triton unavailable: {backends.backend_status('triton')}")
    x, W, b, A, B = (t.double() if t is not None else None for t in _args())
    with pytest.raises(BackendUnavailableError, match="float64"):
        tt_linear(x, W, b, A, B, 1.0, backend="triton")


def test_auto_skipping_a_backend_logs_once(monkeypatch, caplog):
    # Pretend CPU tensors try triton first in auto mode, with triton refusing: the fallback is logged.
    monkeypatch.setitem(backends._AUTO_ORDER, "cpu", ("cuda", "torch"))
    backends._select_cache.clear()
    x, _W, b, A, B = _args()
    with caplog.at_level(logging.WARNING, logger="ttkernels"):
        assert backends.select("auto", x, A, B, b).NAME == "torch"
    backends._select_cache.clear()
    assert "use 'torch' (cuda:" in caplog.text


def test_info_reports_every_backend():
    info = ttkernels.info()
    assert info["ttkernels"] == ttkernels.__version__
    assert info["torch"] == torch.__version__
    assert set(info["backends"]) == {"torch", "triton", "cuda"}
    assert info["backends"]["torch"] == {"available": True, "reason": None}
    for name in ("triton", "cuda"):
        entry = info["backends"][name]
        assert entry["available"] or entry["reason"], f"{name}: unavailable without a reason"


def test_cli_info_prints_json(capsys):
    from ttkernels.__main__ import main

    assert main(["info"]) == 0
    assert '"backends"' in capsys.readouterr().out


def test_selection_cache_does_not_hide_a_later_refusal():
    if backends.backend_status("triton") is not None:
        pytest.skip(f"triton unavailable: {backends.backend_status('triton')}")
    x, W, b, A, B = _args()
    tt_linear(x, W, b, A, B, 1.0, backend="triton")  # fp32 factors: runs (and is cached)
    with pytest.raises(BackendUnavailableError, match="float64"):
        tt_linear(x, W, b, A, B.double(), 1.0, backend="triton")
