"""What a benchmark leaves behind: a table on the terminal, ``<name>.json`` and ``<name>.png``."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gdlphys.figures import save_figure, subplots
from gdlphys.io_utils import atomic_write


@dataclass
class Row:
    """One measured quantity for each code; ``better`` says which direction wins ("lower"/"higher")."""

    name: str
    unit: str
    values: dict[str, float | None]
    better: str = "lower"


@dataclass
class Table:
    """Codes side by side; the ratio column is ``ratio[0] / ratio[1]`` (empty when either is missing)."""

    title: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    ratio: tuple[str, str] | None = ("gdlphys", "MACE")
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, unit: str, values: dict[str, float | None], better: str = "lower") -> None:
        self.rows.append(Row(name, unit, values, better))

    def ratio_of(self, row: Row) -> float | None:
        if self.ratio is None:
            return None
        a, b = (row.values.get(c) for c in self.ratio)
        if a is None or b is None or b == 0 or not (math.isfinite(a) and math.isfinite(b)):
            return None
        return a / b

    def render(self) -> str:
        head = ["quantity", "unit", *self.columns]
        if self.ratio:
            head += [f"{self.ratio[0]}/{self.ratio[1]}", "better"]
        body = []
        for row in self.rows:
            cells = [row.name, row.unit, *(_number(row.values.get(c)) for c in self.columns)]
            if self.ratio:
                ratio = self.ratio_of(row)
                cells += [_number(ratio, 3), _winner(row, ratio, self.ratio)]
            body.append(cells)
        widths = [max(len(str(r[k])) for r in [head, *body]) for k in range(len(head))]

        def line(cells: list[str]) -> str:
            return "  ".join(
                str(c).ljust(w) if k < 2 else str(c).rjust(w) for k, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()

        text = [self.title, line(head), line(["-" * w for w in widths])]
        text += [line(cells) for cells in body]
        text += [f"  {note}" for note in self.notes]
        return "\n".join(text)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["ratio_label"] = f"{self.ratio[0]}/{self.ratio[1]}" if self.ratio else None
        for row, out in zip(self.rows, values["rows"]):
            out["ratio"] = self.ratio_of(row)
        return values


def _number(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 10 ** (digits - 1)):
        return str(int(value))
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10 ** digits or magnitude < 10 ** -(digits - 1):
        return f"{value:.{digits - 1}e}"
    decimals = max(0, digits - 1 - math.floor(math.log10(magnitude)))
    return f"{value:.{decimals}f}"


def _winner(row: Row, ratio: float | None, names: tuple[str, str]) -> str:
    if ratio is None or row.better not in ("lower", "higher"):
        return ""
    first_wins = ratio < 1 if row.better == "lower" else ratio > 1
    return names[0] if first_wins else names[1]


def environment() -> dict[str, Any]:
    """Where the numbers were measured."""
    import torch

    from gdlphys.version import __version__

    cpu = platform.processor() or platform.machine()
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gdlphys": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_report(out: Path, name: str, tables: list[Table], details: dict[str, Any], options: dict[str, Any]) -> Path:
    """``out/<name>.json``: tables, raw measurements, options and environment."""
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "tables": [t.to_dict() for t in tables],
        "details": details,
        "options": options,
        "environment": environment(),
    }
    path = out / f"{name}.json"
    with atomic_write(path) as tmp:
        Path(tmp).write_text(json.dumps(document, indent=1, default=str))
    return path


COLOURS = {"gdlphys": "#1f77b4", "MACE": "#d62728", "ASE": "#7f7f7f", "vesin": "#2ca02c", "matscipy": "#9467bd"}


def save_png(fig, path: Path) -> Path:
    """``path`` (a .png), trimmed to what was drawn."""
    return save_figure(fig, path, format="png", bbox_inches="tight")


def bar_panels(path: Path, title: str, panels: list[tuple[str, dict[str, float | None]]]) -> Path:
    """One bar chart per quantity, the codes side by side."""
    fig, axes = subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    for ax, (label, values) in zip(axes[0], panels):
        names = [n for n, v in values.items() if v is not None]
        heights = [values[n] for n in names]
        bars = ax.bar(names, heights, color=[COLOURS.get(n, "#555555") for n in names])
        ax.bar_label(bars, labels=[_number(h, 3) for h in heights], fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.margins(y=0.15)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


def line_panels(
    path: Path, title: str, panels: list[tuple[str, str, str, dict[str, list[tuple[float, float]]]]]
) -> Path:
    """Log-log lines: panels of (title, x label, y label, {code: [(x, y), ...]})."""
    fig, axes = subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6), squeeze=False)
    for ax, (label, xlabel, ylabel, series) in zip(axes[0], panels):
        for code, points in series.items():
            points = [(x, y) for x, y in points if y is not None and y > 0]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, "o-", label=code, color=COLOURS.get(code))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(label, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


def trace_plot(path: Path, title: str, ylabel: str, traces: dict[str, tuple[list[float], list[float]]]) -> Path:
    """Linear lines of y(t) per code, e.g. the total energy along NVE: {code: (t, y)}."""
    fig, ax = subplots(figsize=(7.0, 3.6))
    for code, (xs, ys) in traces.items():
        ax.plot(xs, ys, lw=0.6, label=code, color=COLOURS.get(code))
    ax.axhline(0.0, color="black", lw=0.5)
    ax.set_xlabel("time (ps)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)
