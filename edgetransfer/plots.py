"""The pictures a run keeps: training curves and the test confusion matrix, as PNGs written atomically."""

from __future__ import annotations

import math
from pathlib import Path

from edgetransfer.rundir import atomic_path


def plot_curves(history: list[dict], path: Path) -> None:
    """Training and validation loss, validation accuracy and learning rate per epoch, the phases marked, as a
    PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    panels = (
        (("loss", "training"), ("val_loss", "validation")),
        (("val_top1", "validation"),),
        (("lr", "peak"),),
    )
    for ax, lines, title in zip(axes, panels, ("loss", "val top-1", "learning rate"), strict=True):
        for key, label in lines:
            values = [math.nan if h.get(key) is None else h[key] for h in history]  # None: no validation split
            ax.plot(epochs, values, marker="o", label=label)
        for before, after in zip(history, history[1:], strict=False):
            if before["phase"] != after["phase"]:  # two-phase: where the body starts learning
                ax.axvline(before["epoch"] + 0.5, color="grey", linestyle="--", linewidth=1)
                ax.text(before["epoch"] + 0.55, 0.95, after["phase"], transform=ax.get_xaxis_transform(), color="grey")
        if title == "val top-1":
            ax.set_ylim(top=1.005)  # an accuracy never goes past 100 %
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend()
    _save(fig, path)


def plot_confusion(matrix: list[list[int]], labels: tuple[str, ...], path: Path) -> None:
    """The test confusion matrix (rows: true class, columns: predicted), counts in the cells, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(labels)
    side = min(2 + 0.45 * n, 16)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(matrix, cmap="Blues")
    ticks = range(n)
    # class names as written: matplotlib reads text between two '$' as math ('$5_$10' raised after training)
    names = [str(label)[:12] for label in labels]
    ax.set_xticks(ticks, names, rotation=column_rotation(names), parse_math=False)
    ax.set_yticks(ticks, names, parse_math=False)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("test confusion matrix")
    if n <= 30:
        peak = max(max(row) for row in matrix) or 1
        for i in range(n):
            for j in range(n):
                if matrix[i][j]:
                    colour = "white" if matrix[i][j] > peak / 2 else "black"
                    ax.text(j, i, matrix[i][j], ha="center", va="center", color=colour, fontsize=8)
    _save(fig, path)


def column_rotation(names: list[str]) -> int:
    """Degrees to turn the column names by: upright only where each fits its column (~0.45 inch, about 5 characters
    at 10 pt); five names like 'astronaut photo' ran together into one line."""
    return 90 if len(names) > 6 or max(map(len, names), default=0) > 5 else 0


def _save(fig, path: Path) -> None:
    """``fig`` as a PNG at ``path`` (atomically), closed. A class name in a script the bundled font lacks (CJK, say)
    draws as boxes: matplotlib's warning per missing glyph is kept off the console."""
    import warnings

    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
