"""loss.png: the training (and eval) loss of a train-adapter run, for its folder and card."""

from __future__ import annotations

from pathlib import Path

from taskdecomp.files import atomic_path
from taskdecomp.model_card import read_log

__all__ = ["plot_loss"]


def plot_loss(output_dir: Path) -> Path:
    """loss.png: training loss per logged step, eval loss where evaluated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = read_log(output_dir)
    train = [(r["step"], r["loss"]) for r in log if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in log if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss")
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (completion tokens)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(output_dir) / "loss.png"
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path
