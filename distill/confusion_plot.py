"""The confusion matrices of an `emoedge evaluate` result as one PNG (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distill.scoring import ROWS
from edge.core.labels import LABELS


def plot_confusion(result: dict, path: Path) -> Path:
    """One panel per evaluated input (face only, audio only, fused, …): true class by row,
    predicted by column, coloured by the share of the row, annotated with counts."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = [(key, label) for key, label in ROWS if result["metrics"].get(key)]
    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 4.6), squeeze=False)
    for ax, (key, label) in zip(axes[0], rows, strict=True):
        metrics = result["metrics"][key]
        counts = np.asarray(metrics["confusion"], dtype=float)
        shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        for (i, j), n in np.ndenumerate(counts):
            colour = "white" if shares[i, j] > 0.5 else "black"
            ax.text(j, i, f"{n:.0f}", ha="center", va="center", fontsize=7, color=colour)
        ax.set_xticks(range(len(LABELS)), LABELS, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(LABELS)), LABELS, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(
            f"{label}\nacc {metrics['accuracy']:.1f} % · UAR {metrics['uar']:.1f} % · "
            f"n {metrics['n']}",
            fontsize=9,
        )
    fig.suptitle(f"{result['runtime']} · {Path(result['model']).name} · split {result['split']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
