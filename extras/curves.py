"""Draw a training run's loss and accuracy curves as a PNG; needs matplotlib.

Usage: python train.py --plot curves.png   (or: from extras.curves import save_curves)
"""
import torch

from common import save_atomically


def check_flags(parser, args):
    """Refuse --plot at once, before training, if matplotlib is not installed (exit 2)."""
    try:
        import matplotlib  # noqa: F401  (optional: only --plot needs it)
    except ImportError:
        parser.error("--plot needs matplotlib, which is not installed: pip install matplotlib")


def running_mean(values, window):
    """Mean of each value and the window - 1 values before it (fewer at the start)."""
    totals = torch.cat([torch.zeros(1), torch.tensor(values).double().cumsum(0)])  # (n + 1,)
    ends = torch.arange(1, len(values) + 1)
    starts = (ends - window).clamp(min=0)
    return ((totals[ends] - totals[starts]) / (ends - starts)).tolist()


def save_curves(path, history, test_accuracy, epochs):
    """Save the tutorial's per-step loss and accuracy, and the final test accuracy, as a PNG."""
    from matplotlib.figure import Figure  # optional dependency; a Figure needs no display

    steps_per_epoch = len(history["loss"]) / epochs
    epoch = [(step + 1) / steps_per_epoch for step in range(len(history["loss"]))]
    window = max(1, round(steps_per_epoch / 10))  # a tenth of an epoch smooths the batch noise
    loss = history["loss"]
    accuracy = [value * 100 for value in history["accuracy"]]
    figure = Figure(figsize=(11, 4), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    loss_axes.plot(epoch, loss, linewidth=0.5, alpha=0.35, label="each step")
    loss_axes.plot(epoch, running_mean(loss, window), label=f"mean of {window} steps")
    loss_axes.set(title="Training loss", xlabel="epoch", ylabel="cross-entropy (log scale)",
                  yscale="log")
    loss_axes.legend(loc="upper right")
    accuracy_axes.plot(epoch, accuracy, linewidth=0.5, alpha=0.35, label="each training batch")
    accuracy_axes.plot(epoch, running_mean(accuracy, window), label=f"mean of {window} batches")
    accuracy_axes.axhline(test_accuracy * 100, color="C3", linestyle="--",
                          label=f"test set after training: {test_accuracy * 100:.2f}%")
    lowest_after_start = min(accuracy[len(accuracy) // 10:])  # the first steps squash the scale
    accuracy_axes.set(title="Accuracy of each training batch", xlabel="epoch", ylabel="% correct",
                      ylim=(max(0, lowest_after_start - 2), 100.5))
    accuracy_axes.legend(loc="lower right")
    save_atomically(path, lambda file: figure.savefig(file, format="png", dpi=100))
    print(f"Saved {path}")
