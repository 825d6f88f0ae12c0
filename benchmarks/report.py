"""Turn pytest-benchmark JSON from benchmarks/ into a markdown report and a PNG plot.

    python -m benchmarks.report benchmarks/results/cpu-amd-epyc-2026-11-25.json      # writes .md and .png beside it
    python benchmarks/report.py RESULT.json --md out.md --png out.png --print

The report leads with ratios (time / base F.linear and time / PEFT LoRA r=8, medians of the same group: same layer,
token count, pass and inputs), then absolute medians, then parameters / adapter bytes / training-step memory, then
measured time against the floor model, then what was not measured and why. The header names the card, the versions
and the command. Only the standard library is needed for the markdown; matplotlib for the plot.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

PROVIDER_ORDER = ("base", "peft_lora_r8", "peft_lora_r16", "tt_dense", "tt_einsum", "tt_torch", "tt_triton", "tt_cuda")
SHORT = {
    "base": "base",
    "peft_lora_r8": "LoRA r8",
    "peft_lora_r16": "LoRA r16",
    "tt_dense": "TT dense ΔW",
    "tt_einsum": "TT einsum",
    "tt_torch": "ttk torch",
    "tt_triton": "ttk triton",
    "tt_cuda": "ttk cuda",
}
MERGED_SHORT = {"tt_torch": "ttk merged"}
MODE_ORDER = ("fwd", "train", "merged")
MODE_TITLES = {
    "fwd": "Forward, adapter unmerged (no grad)",
    "train": "Forward+backward (one layer's training step)",
    "merged": "Merged inference (adapter folded into W)",
}


def _rows(data: dict) -> list[dict]:
    """One flat record per benchmark: extra_info + median/iqr/rounds in seconds."""
    out = []
    for bench in data.get("benchmarks", []):
        info = dict(bench.get("extra_info") or {})
        if "provider" not in info:
            continue
        stats = bench.get("stats") or {}
        info.update(median=stats.get("median"), iqr=stats.get("iqr"), n_rounds=stats.get("rounds"))
        out.append(info)
    return out


def _layer(r: dict) -> str:
    return f"{r['shape']} [{','.join(str(k) for k in r['tt_shape'])}] r{r['rank']}"


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def _fmt_ratio(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.2f}×"


def _fmt_bytes(b: float | None) -> str:
    if b is None:
        return "—"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(b) >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{b:.0f} B"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i < 2 else "--:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _index(rows: list[dict]) -> dict:
    """{mode: {(layer, tokens): {provider: record}}} with workloads in a stable order."""
    idx: dict = defaultdict(dict)
    for r in rows:
        idx[r["mode"]].setdefault((_layer(r), r["tokens"]), {})[r["provider"]] = r
    return idx


def _providers(by_workload: dict) -> list[str]:
    present = {p for recs in by_workload.values() for p in recs}
    return [p for p in PROVIDER_ORDER if p in present]


def _ratio(recs: dict, provider: str, reference: str) -> float | None:
    a, b = recs.get(provider), recs.get(reference)
    if not a or not b or not a.get("median") or not b.get("median"):
        return None
    return a["median"] / b["median"]


def _short(mode: str, provider: str) -> str:
    return MERGED_SHORT.get(provider, SHORT[provider]) if mode == "merged" else SHORT[provider]


def header_lines(data: dict, source: str | None = None, plot: str | None = None) -> list[str]:
    info = (data.get("machine_info") or {}).get("ttkernels_bench") or {}
    versions = info.get("versions") or {}
    rates = info.get("floor_rates") or {}
    card = info.get("card", "unknown machine")
    lines = [f"# ttkernels benchmarks — {card}", ""]
    lines.append(f"- **Card / CPU**: {card} ({info.get('device', '?')}, {info.get('dtype', '?')})")
    vers = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    lines.append(f"- **Versions**: {vers}")
    lines.append(
        f"- **Command**: `{info.get('command', '?')}`  (set `{info.get('set', '?')}`: "
        f"{info.get('set_description', '')})"
    )
    if data.get("datetime"):
        lines.append(f"- **Date**: {data['datetime']}")
    commit = data.get("commit_info") or {}
    if commit.get("id"):
        lines.append(f"- **Commit**: {commit['id'][:12]}{' (dirty tree)' if commit.get('dirty') else ''}")
    lines.append(f"- **Timing**: {info.get('timing', '?')}")
    lines.append(f"- **Memory**: {info.get('memory', '?')}")
    if rates:
        lines.append(
            f"- **Floor rates**: {rates.get('bandwidth', 0) / 1e9:.1f} GB/s copy, "
            f"{rates.get('peak_flops', 0) / 1e12:.3g} TFLOP/s matmul ({rates.get('how', '')})"
        )
        if info.get("device") == "cpu":
            lines.append(
                "  On a CPU the floor is indicative only: shared cores, and with no cache flush the weights "
                "and small inputs stay in cache between rounds, so times can fall below the DRAM floor."
            )
    if info.get("device") == "cpu":
        lines.append(
            "- **CPU caveat**: a shared machine (other processes use the cores); torch runs one thread so that a "
            "descheduled OpenMP worker cannot stall a call. Compare within a group (measured back to back) and "
            "read the IQR; numbers across groups drift. GPU numbers come from benchmarks/gpu_check.sh."
        )
    if source:
        lines.append(f"- **Data**: `{source}`" + (f"; plot `{plot}`" if plot else ""))
    lines += [
        "",
        "Lower is better. Each ratio divides medians of one group (same layer, token count T, pass and "
        "inputs). `—`: not measured (see the end).",
        "",
    ]
    return lines


def render_markdown(data: dict, source: str | None = None, plot: str | None = None) -> str:
    rows = _rows(data)
    idx = _index(rows)
    lines = header_lines(data, source, plot)
    if not rows:
        return "\n".join([*lines, "No benchmark results."])

    for mode in MODE_ORDER:
        if mode not in idx:
            continue
        by_w = idx[mode]
        provs = _providers(by_w)
        for reference, title in (("base", "time ÷ base F.linear"), ("peft_lora_r8", "time ÷ PEFT LoRA r=8")):
            cols = [p for p in provs if p != reference]
            lines += [f"## {MODE_TITLES[mode]}: {title}", ""]
            lines += _table(
                ["layer", "T", *(_short(mode, p) for p in cols)],
                [
                    [layer, str(t), *(_fmt_ratio(_ratio(recs, p, reference)) for p in cols)]
                    for (layer, t), recs in by_w.items()
                ],
            )
            lines.append("")

    lines += ["## Absolute median times (IQR in brackets)", ""]
    for mode in MODE_ORDER:
        if mode not in idx:
            continue
        by_w = idx[mode]
        provs = _providers(by_w)
        lines += [f"### {MODE_TITLES[mode]}", ""]
        lines += _table(
            ["layer", "T", *(_short(mode, p) for p in provs)],
            [
                [
                    layer,
                    str(t),
                    *(
                        f"{_fmt_time(recs[p]['median'])} ({_fmt_time(recs[p]['iqr'])})" if p in recs else "—"
                        for p in provs
                    ),
                ]
                for (layer, t), recs in by_w.items()
            ],
        )
        lines.append("")

    lines += [
        "## Parameters, adapter size and peak memory of the training step",
        "",
        "Peak memory: extra bytes allocated during one training step above what was allocated before it "
        "(weights and inputs), at the largest T measured for the layer.",
        "",
    ]
    train = idx.get("train", {})
    largest: dict = {}
    for layer, t in train:
        largest[layer] = max(largest.get(layer, 0), t)
    mem_rows = []
    for layer, t in largest.items():
        recs = train[(layer, t)]
        lora = recs.get("peft_lora_r8")
        for p in _providers({0: recs}):
            r = recs[p]
            vs = (r["peak_mem_bytes"] / lora["peak_mem_bytes"]) if lora and lora.get("peak_mem_bytes") else None
            mem_rows.append(
                [
                    layer,
                    str(t),
                    _short("train", p),
                    f"{r['params']:,}",
                    _fmt_bytes(r["adapter_bytes_16bit"]),
                    _fmt_bytes(r.get("peak_mem_bytes")),
                    _fmt_ratio(vs),
                    r.get("method", ""),
                ]
            )
    lines += _table(
        [
            "layer",
            "T",
            "method",
            "trainable params",
            "adapter (16-bit)",
            "peak train mem",
            "mem ÷ LoRA r8",
            "computation",
        ],
        mem_rows,
    )
    lines.append("")

    lines += [
        "## Measured time against the floor model",
        "",
        "floor: max(flops/peak, minimum bytes/bandwidth) for the whole pass; impl floor: the implementation's "
        "stages one after another, every intermediate written and read once (benchmarks/floor.py, "
        "perf-notes §3/§6). Largest T per layer.",
        "",
    ]
    floor_rows = []
    for mode in MODE_ORDER:
        for (layer, t), recs in idx.get(mode, {}).items():
            if t != largest.get(layer, t):
                continue
            for p in _providers({0: recs}):
                r = recs[p]
                if r.get("floor_us") is None or not r.get("median"):
                    continue
                floor_rows.append(
                    [
                        layer,
                        str(t),
                        mode,
                        _short(mode, p),
                        _fmt_time(r["median"]),
                        _fmt_time(r["floor_us"] * 1e-6),
                        _fmt_time(r["floor_impl_us"] * 1e-6),
                        _fmt_ratio(r["median"] / (r["floor_impl_us"] * 1e-6)),
                        f"{r['flops'] / 1e9:.3g}",
                        f"{r['bytes_impl'] / 2**20:.3g}",
                    ]
                )
    if floor_rows:
        lines += _table(
            [
                "layer",
                "T",
                "pass",
                "method",
                "measured",
                "floor",
                "impl floor",
                "measured ÷ impl floor",
                "GFLOP",
                "MiB moved (impl)",
            ],
            floor_rows,
        )
    else:
        lines.append("(no floor: timing was disabled or the rates were not measured)")
    lines.append("")

    skipped = data.get("ttkernels_skipped") or []
    if skipped:
        lines += ["## Not measured in this run", ""]
        reasons: dict = defaultdict(list)
        for s in skipped:
            provider = s["name"].rsplit("-", 1)[-1].rstrip("]")
            reasons[(provider, _generic(s["reason"]))].append(s["name"])
        for (provider, reason), names in sorted(reasons.items()):
            lines.append(f"- **{SHORT.get(provider, provider)}** ({len(names)} benchmarks): {reason}")
        lines.append("")
    return "\n".join(lines)


def render_compact(data: dict) -> str:
    """A short fixed-width table (forward and training step): base time, then each method's time ÷ base and
    ÷ PEFT LoRA r=8. For the end of a log, where only the last few kilobytes are read."""
    rows = _rows(data)
    idx = _index(rows)
    info = (data.get("machine_info") or {}).get("ttkernels_bench") or {}
    provs = [
        p
        for p in ("peft_lora_r8", "tt_dense", "tt_einsum", "tt_torch", "tt_triton", "tt_cuda")
        if any(r["provider"] == p for r in rows)
    ]
    head = f"{'layer':<22}{'T':>6} {'pass':<6}{'base':>10}" + "".join(f"{SHORT[p]:>17}" for p in provs)
    out = [
        f"ttkernels — {info.get('card', '?')} ({info.get('dtype', '?')}); median time ÷ base (÷ LoRA r8)",
        head,
        "-" * len(head),
    ]
    for mode in ("fwd", "train"):
        for (layer, t), recs in idx.get(mode, {}).items():
            base = recs.get("base", {}).get("median")
            cells = []
            for p in provs:
                rb, rl = _ratio(recs, p, "base"), _ratio(recs, p, "peft_lora_r8")
                cells.append(
                    "—"
                    if rb is None
                    else (f"{rb:.2f}×" if p == "peft_lora_r8" or rl is None else f"{rb:.2f}× ({rl:.2f})")
                )
            out.append(
                f"{layer.split(' ')[0]:<22}{t:>6} {mode:<6}{_fmt_time(base):>10}" + "".join(f"{c:>17}" for c in cells)
            )
    return "\n".join(out)


def _generic(reason: str) -> str:
    """Collapse per-shape wording so one reason is listed once."""
    return reason.strip().splitlines()[0] if reason.strip() else "skipped"


def render_plot(data: dict, path: str | Path) -> None:
    """Latency ratio to base per workload and method (one panel per pass) and trainable params vs latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(data)
    idx = _index(rows)
    modes = [m for m in MODE_ORDER if m in idx]
    fig, axes = plt.subplots(
        len(modes) + 1,
        1,
        figsize=(max(10, 0.9 * max(len(idx[m]) for m in modes) + 4), 4.2 * (len(modes) + 1)),
        squeeze=False,
    )
    colors = plt.get_cmap("tab10")
    color_of = {p: colors(i) for i, p in enumerate(PROVIDER_ORDER)}
    for ax, mode in zip(axes[:, 0], modes, strict=False):
        by_w = idx[mode]
        provs = [p for p in _providers(by_w) if p != "base"]
        width = 0.8 / max(1, len(provs))
        workloads = list(by_w)
        for j, p in enumerate(provs):
            xs, ys = [], []
            for i, w in enumerate(workloads):
                ratio = _ratio(by_w[w], p, "base")
                if ratio is not None:
                    xs.append(i + (j - (len(provs) - 1) / 2) * width)
                    ys.append(ratio)
            ax.bar(xs, ys, width=width, label=_short(mode, p), color=color_of[p])
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(workloads)))
        ax.set_xticklabels(
            [f"{layer.split(' ')[0]}\n{layer.split(' ', 1)[1]}\nT={t}" for layer, t in workloads], fontsize=6
        )
        ax.set_ylabel("time ÷ base F.linear (log)")
        ax.set_title(MODE_TITLES[mode], fontsize=10)
        ax.legend(fontsize=7, ncol=4)
        ax.grid(axis="y", which="both", alpha=0.3)

    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    ratio_fmt = FuncFormatter(lambda v, _: f"{v:g}×")
    for ax in axes[:-1, 0]:
        ax.yaxis.set_major_formatter(ratio_fmt)
        ax.yaxis.set_minor_formatter(ratio_fmt)
        ax.tick_params(axis="y", which="minor", labelsize=6)

    ax = axes[-1, 0]
    train = idx.get("train") or idx.get("fwd") or {}
    markers = "osD^v<>"
    layers = sorted({layer for layer, _ in train})
    largest = {layer: max(t for lay, t in train if lay == layer) for layer in layers}
    seen: set = set()
    for li, layer in enumerate(layers):
        recs = train[(layer, largest[layer])]
        for p in _providers({0: recs}):
            ratio = _ratio(recs, p, "base")
            if p == "base" or ratio is None:
                continue
            seen.add(p)
            ax.scatter(max(1, recs[p]["params"]), ratio, color=color_of[p], marker=markers[li % len(markers)], s=50)
    handles = [
        Line2D([], [], color=color_of[p], marker="o", linestyle="", label=_short("train", p))
        for p in PROVIDER_ORDER
        if p in seen
    ]
    handles += [
        Line2D(
            [],
            [],
            color="gray",
            marker=markers[i % len(markers)],
            linestyle="",
            label=f"{layer.split(' ')[0]} T={largest[layer]}",
        )
        for i, layer in enumerate(layers)
    ]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ratio_fmt)
    ax.yaxis.set_minor_formatter(ratio_fmt)
    ax.tick_params(axis="y", which="minor", labelsize=6)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("trainable parameters per layer (log)")
    ax.set_ylabel("training-step time ÷ base (log)")
    ax.set_title("Parameters vs latency (training step, largest T per layer)", fontsize=10)
    ax.legend(handles=handles, fontsize=7, ncol=2)
    ax.grid(which="both", alpha=0.3)
    info = (data.get("machine_info") or {}).get("ttkernels_bench") or {}
    fig.suptitle(f"ttkernels — {info.get('card', '')} — {info.get('dtype', '')}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", type=Path, help="pytest-benchmark --benchmark-json output")
    parser.add_argument("--md", type=Path, default=None, help="markdown output (default: beside the JSON)")
    parser.add_argument("--png", type=Path, default=None, help="plot output (default: beside the JSON)")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--print", action="store_true", help="also print the markdown")
    parser.add_argument("--compact", action="store_true", help="only print a short fixed-width table")
    args = parser.parse_args(argv)
    data = json.loads(args.json.read_text())
    if args.compact:
        print(render_compact(data))
        return 0
    md = args.md or args.json.with_suffix(".md")
    png = None if args.no_plot else (args.png or args.json.with_suffix(".png"))
    if png is not None:
        try:
            render_plot(data, png)
        except ImportError as exc:  # matplotlib is in the [bench] extra
            print(f"no plot: {exc}", file=sys.stderr)
            png = None
    text = render_markdown(data, source=args.json.name, plot=png.name if png else None)
    md.write_text(text + "\n")
    if args.print:
        print(text)
    print(f"wrote {md}" + (f" and {png}" if png else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
