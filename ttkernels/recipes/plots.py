"""Figures like the paper's, written as PNG from the search / comparison results.

* ``fig5_params_vs_accuracy.png`` (paper Fig. 5): every search trial as a point, adapter parameters (TT
  cores, log scale) against validation accuracy, coloured by α; completed trials filled, HyperBand-pruned
  trials hollow (they stopped early, so their accuracy is a lower bound). The comparison's methods are drawn
  at their adapter parameter count and mean validation accuracy as reference markers.
* ``fig4_storage.png`` (paper Fig. 4): storage of what each method trains and saves, at 16 bit, log scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .compare import METHOD_NAMES
from .tables import read_csv

BASELINE_STYLE = {"lora": ("s", "tab:red"), "full": ("*", "tab:purple"), "head": ("v", "tab:gray"),
                  "tt": ("o", "black")}
#: Markers and colours of the extra TT-LoRA configurations (sub-folders), in folder order.
EXTRA_STYLES = [("h", "tab:olive"), ("P", "tab:cyan"), ("X", "tab:orange"), ("d", "tab:pink"), ("p", "tab:brown")]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_tradeoff(trials: list[dict[str, Any]], out: str | Path, compare: list[dict[str, Any]] | None = None,
                  title: str = "") -> Path:
    plt = _pyplot()
    from matplotlib.colors import LogNorm
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=150)
    pts = [t for t in trials if t.get("val_accuracy") is not None and t.get("adapter_params") and not t.get("note")]
    alphas = sorted({float(t["alpha"]) for t in pts}) or [1.0]
    norm = LogNorm(vmin=min(alphas), vmax=max(alphas) if max(alphas) > min(alphas) else min(alphas) * 2)
    cmap = plt.get_cmap("viridis")
    sc = None
    for done in (False, True):
        group = [t for t in pts if (t.get("state") == "complete") == done]
        if not group:
            continue
        x = [t["adapter_params"] for t in group]
        y = [100 * t["val_accuracy"] for t in group]
        c = [float(t["alpha"]) for t in group]
        if done:
            sc = ax.scatter(x, y, c=c, cmap=cmap, norm=norm, s=55, edgecolors="black", linewidths=0.6, zorder=3)
        else:
            ax.scatter(x, y, facecolors="none", edgecolors=[cmap(norm(v)) for v in c], s=45, linewidths=1.3,
                       zorder=2)
    if sc is None and pts:
        sc = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    if sc is not None:
        from matplotlib.ticker import FixedLocator, NullLocator

        bar = fig.colorbar(sc, ax=ax, pad=0.02)
        bar.set_label("α (TT-LoRA scale)")
        bar.ax.yaxis.set_major_locator(FixedLocator(alphas))
        bar.ax.yaxis.set_minor_locator(NullLocator())
        bar.ax.set_yticklabels([f"{a:g}" for a in alphas])
    handles = [Line2D([], [], marker="o", ls="", mfc="tab:gray", mec="black",
                      label="TT-LoRA search trial (completed)"),
               Line2D([], [], marker="o", ls="", mfc="none", mec="tab:gray",
                      label="TT-LoRA search trial (pruned by HyperBand)")]
    for row in compare or []:
        m = row["method"]
        if row.get("val_accuracy_mean") is None or (m == "head" and not row.get("adapter_params")):
            x = max(1, row.get("trainable_params") or 1)
        else:
            x = max(1, row.get("adapter_params") or row.get("trainable_params") or 1)
        marker, colour = _style(row)
        y = row.get("val_accuracy_mean")
        if y is None:
            continue
        ax.errorbar(x, y, yerr=row.get("val_accuracy_std") or 0, fmt=marker, color=colour, ms=11 if m == "full" else 8,
                    mec="black", capsize=3, zorder=4)
        label = _label(row) + (" (head params)" if m == "head" else "") + " — mean of seeds"
        handles.append(Line2D([], [], marker=marker, ls="", color=colour, mec="black", label=label))
    ax.set_xscale("log")
    ax.set_xlabel("trainable adapter parameters (log scale; heads excluded)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title((title + "\n" if title else "") + "adapter parameters vs accuracy (cf. paper Fig. 5)", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(handles=handles, fontsize=7, loc="lower right", framealpha=0.9)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_storage(compare: list[dict[str, Any]], out: str | Path, title: str = "") -> Path:
    plt = _pyplot()
    rank = {"full": 0, "lora": 1, "tt": 2, "head": 3}
    rows = sorted(compare, key=lambda r: (rank.get(r["method"], 4), bool(r.get("extra"))))
    fig, ax = plt.subplots(figsize=(7.5 if len(rows) > 4 else 6.5, 4.4), dpi=150)
    names = [_label(r).replace(" (", "\n(").replace(" [", "\n[") for r in rows]
    kb = [float(r["adapter_kb_fp16"]) for r in rows]
    colours = ["tab:green" if r["method"] == "tt" and not r.get("extra") else _style(r)[1] for r in rows]
    bars = ax.bar(range(len(rows)), kb, color=colours, edgecolor="black", tick_label=names)
    ax.tick_params(axis="x", labelsize=7)
    for bar, value, row in zip(bars, kb, rows, strict=False):
        text = f"{value / 1024:.1f} MB" if value >= 1024 else f"{value:.1f} KB"
        text += f"\n{row['trainable_params']:,} params"
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom", fontsize=8,
                    xytext=(0, 3), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_ylim(top=max(kb) * 30 if kb else 10)
    ax.set_ylabel("saved trainable weights at 16 bit (KB, log scale)")
    ax.set_title((title + "\n" if title else "") + "storage of the trained weights (cf. paper Fig. 4)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out


def _style(row: dict[str, Any]) -> tuple[str, str]:
    if row.get("extra"):
        return EXTRA_STYLES[row.get("extra_index", 0) % len(EXTRA_STYLES)]
    return BASELINE_STYLE.get(row["method"], ("D", "tab:orange"))


def _label(row: dict[str, Any]) -> str:
    return row.get("label") or row.get("name") or METHOD_NAMES.get(row["method"], row["method"])


def read_comparisons(folder: str | Path) -> list[dict[str, Any]] | None:
    """The rows of ``folder/compare.csv`` plus the TT-LoRA rows of sub-folder comparisons.

    A sub-folder (``<folder>/<name>/compare.csv``: another TT-LoRA configuration or protocol) adds its TT-LoRA
    rows as extra entries labelled with the folder name, one marker and colour per folder; its baselines are not
    repeated. Folders named ``exploration*`` and ``search`` are left out. None when there is nothing to read.
    """
    folder = Path(folder)
    compare = read_csv(folder / "compare.csv") if (folder / "compare.csv").is_file() else None
    extras = [p for p in sorted(folder.glob("*/compare.csv"))
              if not p.parent.name.startswith("exploration") and p.parent.name != "search"]
    for index, extra in enumerate(extras):
        for row in read_csv(extra):
            if row["method"] != "tt":
                continue
            row["label"] = f"{METHOD_NAMES.get(row['method'], row['method'])} [{extra.parent.name}]"
            row["extra"], row["extra_index"] = True, index
            compare = [*(compare or []), row]
    return compare


def plot_results(folder: str | Path, title: str = "") -> list[Path]:
    """Draw every figure the data in ``folder`` allows (``search/trials.csv``, the comparisons of
    :func:`read_comparisons`)."""
    folder = Path(folder)
    compare = read_comparisons(folder)
    trials_file = next((p for p in (folder / "search" / "trials.csv", folder / "trials.csv") if p.is_file()), None)
    written = []
    if trials_file is not None:
        written.append(plot_tradeoff(read_csv(trials_file), folder / "fig5_params_vs_accuracy.png", compare,
                                     title=title))
    if compare:
        written.append(plot_storage(compare, folder / "fig4_storage.png", title=title))
    if not written:
        raise FileNotFoundError(f"{folder} has neither search/trials.csv nor compare.csv to plot")
    return written
