"""CSV and markdown tables of run records (lists of flat dicts)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.1e}"
        return f"{value:.4g}" if abs(value) < 100 else f"{value:.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None,
                   headers: dict[str, str] | None = None) -> str:
    """A GitHub markdown table of ``rows`` (values formatted compactly; strings kept as they are)."""
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    headers = headers or {}
    lines = ["| " + " | ".join(headers.get(c, c) for c in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def write_csv(path: str | Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({c: r.get(c) for c in columns})


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a CSV with numbers parsed back (int, then float; empty -> None)."""

    def parse(v: str) -> Any:
        if v == "":
            return None
        for cast in (int, float):
            try:
                return cast(v)
            except ValueError:
                pass
        return {"True": True, "False": False}.get(v, v)

    with open(path, newline="") as f:
        return [{k: parse(v) for k, v in row.items()} for row in csv.DictReader(f)]
