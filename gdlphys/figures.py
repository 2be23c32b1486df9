"""Figures drawn straight into files: matplotlib's object-oriented API on an Agg canvas.

pyplot keeps a process-wide backend and registry of open figures, and
``matplotlib.use`` would switch the backend under whoever imported gdlphys; a
``Figure`` with its own ``FigureCanvasAgg`` touches neither (nothing to close).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from gdlphys.io_utils import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["save_figure", "subplots"]


def subplots(
    nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None, **kwargs
) -> tuple[Figure, Any]:
    """A new figure on its own Agg canvas and its axes; ``kwargs`` as ``Figure.subplots`` (squeeze, sharex, ...)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 120, **kwargs) -> Path:
    """Write ``fig`` atomically to ``path``, in the format its suffix names (png without one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("format", path.suffix.lstrip(".") or "png")
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=dpi, **kwargs)
    return path
