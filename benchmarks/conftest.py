"""pytest-benchmark setup: which cases run, the shared environment, machine info, and the final table.

    pytest benchmarks/ --benchmark-only                      # quick set on CPU, full Hopper set on CUDA
    TTKERNELS_BENCH=full pytest benchmarks/ --benchmark-only # or --bench-set=full
    pytest benchmarks/ --benchmark-only --bench-save         # + benchmarks/results/<machine>-<date>.json/.md/.png
    pytest tests benchmarks --benchmark-disable -q           # CI smoke run: every body once, smallest shapes

At the end of a timed session the markdown table (benchmarks/report.py) is printed; with ``--benchmark-json=X.json``
(or ``--bench-save``) it is rendered from that file and written beside it as X.md and X.png.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_SKIP_LOG: list[dict] = []  # benchmarks skipped in this session, with the reason (shown in the report)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ttkernels benchmarks")
    group.addoption(
        "--bench-set",
        choices=("quick", "full", "smoke"),
        default=None,
        help="shape set (default: TTKERNELS_BENCH, else full on CUDA and quick on CPU; smoke when timing is disabled)",
    )
    group.addoption(
        "--bench-save",
        action="store_true",
        default=False,
        help="write <machine>-<date>.json/.md/.png under benchmarks/results/ (sets --benchmark-json)",
    )
    group.addoption("--bench-no-report", action="store_true", default=False, help="do not print the final table")


def _disabled(config: pytest.Config) -> bool:
    bs = getattr(config, "_benchmarksession", None)
    return bool(bs.disabled) if bs is not None else bool(config.getoption("benchmark_disable", False))


def set_name(config: pytest.Config) -> str:
    import torch

    from .shapes import default_set_name

    if _disabled(config):
        return "smoke"
    return config.getoption("bench_set") or default_set_name(torch.cuda.is_available(), False)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    bs = getattr(config, "_benchmarksession", None)
    if config.getoption("bench_save", False) and bs is not None and not bs.json and not bs.disabled:
        from .harness import bench_device, result_stem

        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        bs.json = RESULTS_DIR / f"{result_stem(bench_device())}.json"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not {"shape", "tokens", "mode", "provider"} <= set(metafunc.fixturenames):
        return
    from .baselines import MERGED_PROVIDERS, PROVIDERS
    from .shapes import MODES, cases

    params, ids = [], []
    for spec, tokens in cases(set_name(metafunc.config)):
        for mode in MODES:
            for provider in MERGED_PROVIDERS if mode == "merged" else PROVIDERS:
                params.append((spec.name, tokens, mode, provider))
                ids.append(f"{spec.name}-T{tokens}-{mode}-{provider}")
    metafunc.parametrize(("shape", "tokens", "mode", "provider"), params, ids=ids)


@dataclass
class BenchEnv:
    device: object
    dtype: object
    set_name: str
    timing: bool
    rates: dict | None
    card: str
    flush: object


_RUN_INFO: dict = {}  # what the bench_env fixture chose (read when the JSON is written, after its teardown)


@pytest.fixture(scope="session")
def bench_env(request: pytest.FixtureRequest):
    """Device, dtype, set and floor rates for the session. On CPU, torch runs 1 thread unless
    TTKERNELS_BENCH_THREADS says otherwise: on a shared machine a 2-thread OpenMP pool stalls for tens of ms
    whenever a core is taken by another process, which would swamp the numbers."""
    import torch

    from .harness import L2Flusher, bench_device, bench_dtype, card_name, measured_rates

    device = bench_device()
    dtype = bench_dtype(device)
    timing = not _disabled(request.config)
    threads_before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(int(os.environ.get("TTKERNELS_BENCH_THREADS", "1")))
    _RUN_INFO["torch_threads"] = torch.get_num_threads()
    _RUN_INFO["card"] = card_name(device)
    rates = measured_rates(device.type, str(dtype).removeprefix("torch.")) if timing else None
    torch.manual_seed(0)
    yield BenchEnv(
        device,
        dtype,
        set_name(request.config),
        timing,
        rates,
        _RUN_INFO["card"],
        L2Flusher(device) if timing else (lambda: None),
    )
    torch.set_num_threads(threads_before)


def _session_info(config: pytest.Config) -> dict:
    import torch

    from .harness import bench_device, bench_dtype, card_name, measured_rates, versions
    from .shapes import BENCH_SETS

    device = bench_device()
    dtype = bench_dtype(device)
    name = set_name(config)
    timed = not _disabled(config)
    return {
        "card": _RUN_INFO.get("card") or card_name(device),
        "device": device.type,
        "dtype": str(dtype).removeprefix("torch."),
        "versions": versions(),
        "command": "pytest " + " ".join(config.invocation_params.args),
        "cwd": str(config.invocation_params.dir),
        "set": name,
        "set_description": BENCH_SETS[name].description,
        "torch_threads": _RUN_INFO.get("torch_threads", torch.get_num_threads()),
        "floor_rates": measured_rates(device.type, str(dtype).removeprefix("torch.")) if timed else None,
        "timing": "pytest-benchmark pedantic, host clock; torch.cuda.synchronize() inside the timed call on CUDA; "
        "warm-up rounds, then the median of the rounds; inputs rotated across sets exceeding the cache; on CUDA the "
        "L2 is flushed (256 MiB zeroed) in the untimed setup of each round",
        "memory": "cuda: max_memory_allocated() above the allocation before the step"
        if device.type == "cuda"
        else "cpu: torch.profiler allocation events, running sum of allocs - frees, peak above the start of the step",
    }


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    machine_info["ttkernels_bench"] = _session_info(config)


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    output_json["ttkernels_skipped"] = list(_SKIP_LOG)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "test_bench_tt_linear" in report.nodeid and report.when in ("setup", "call"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIP_LOG.append({"name": report.nodeid.split("::")[-1], "reason": reason.removeprefix("Skipped: ")})


def benchmark_json_path(value: object) -> Path | None:
    """--benchmark-json as a path: older pytest-benchmark keeps the str, newer ones an open file (flushed here
    unless pytest-benchmark has closed it already, as 5.2 does before the terminal summary)."""
    if not value:
        return None
    flush = getattr(value, "flush", None)
    if callable(flush) and not getattr(value, "closed", False):
        flush()
    return Path(getattr(value, "name", value))  # type: ignore[arg-type]


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    bs = getattr(config, "_benchmarksession", None)
    if bs is None or bs.disabled or config.getoption("bench_no_report") or not bs.benchmarks:
        return
    import json

    from . import report

    json_path = benchmark_json_path(bs.json)
    if json_path is not None and json_path.exists():
        data = json.loads(json_path.read_text())
    else:
        machine_info = bs.get_machine_info()
        data = {
            "machine_info": machine_info,
            "benchmarks": [b.as_dict(include_data=False) for b in bs.benchmarks if not b.has_error],
            "ttkernels_skipped": list(_SKIP_LOG),
        }
    text = report.render_markdown(data, source=str(json_path) if json_path else "in-memory results")
    if json_path is not None:
        md_path, png_path = json_path.with_suffix(".md"), json_path.with_suffix(".png")
        try:
            report.render_plot(data, png_path)
            text = report.render_markdown(data, source=json_path.name, plot=png_path.name)
        except Exception as exc:  # the table matters more than the plot
            terminalreporter.write_line(f"ttkernels: plot not written ({type(exc).__name__}: {exc})", yellow=True)
        md_path.write_text(text)
    terminalreporter.section("ttkernels benchmark report", sep="=")
    terminalreporter.write_line(text)
    if json_path is not None:
        terminalreporter.write_line(f"ttkernels: wrote {json_path.with_suffix('.md')} and .png beside {json_path}")
    sys.stdout.flush()
