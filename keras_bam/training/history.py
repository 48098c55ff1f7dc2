"""A run's per-epoch history (`history.csv`) and its plot.

One row per epoch, written by the chief before the epoch's checkpoint; at
every start of a run, fresh or resumed, the rows after the checkpoint's
epoch (0 without one) are dropped, so the file always describes the run
that the checkpoints continue, whatever moment a kill came at.
"""

import csv
import io
import pathlib

from keras_bam.atomic import write_atomically

FIELDS = ("epoch", "loss", "accuracy", "eval_loss", "eval_top1_error",
          "eval_top5_error", "learning_rate", "images_per_second", "seconds")
FILE_NAME = "history.csv"


class HistoryError(ValueError):
    """A run folder without a readable history."""


def append(path, entry):
    """Adds one epoch (an object with FIELDS as attributes)."""
    path = pathlib.Path(path)
    new = not path.exists()
    with path.open("a", newline="") as handle:
        out = csv.DictWriter(handle, FIELDS)
        if new:
            out.writeheader()
        out.writerow({f: getattr(entry, f) for f in FIELDS})


def read(path):
    """The rows as dicts of floats (epoch an int); [] when there is none."""
    path = pathlib.Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    try:
        return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items()}
                for row in rows]
    except (TypeError, ValueError):
        raise HistoryError(f"{path} is not a history written by a training "
                           "run (unreadable values).") from None


def truncate(path, epoch):
    """Keeps the rows up to `epoch`, atomically."""
    path = pathlib.Path(path)
    rows = [r for r in read(path) if r["epoch"] <= epoch]
    text = io.StringIO(newline="")
    out = csv.DictWriter(text, FIELDS)
    out.writeheader()
    out.writerows(rows)
    write_atomically(path, text.getvalue())


def load_run(run_dir):
    """(label, rows) of a run folder, for plotting; label from config.json."""
    import json

    run_dir = pathlib.Path(run_dir)
    if not run_dir.is_dir():
        raise HistoryError(f"{run_dir} is not a folder; give the output folder "
                           "of a training run.")
    rows = read(run_dir / FILE_NAME)
    if not rows:
        raise HistoryError(f"{run_dir} has no {FILE_NAME}; train at least one "
                           "epoch into it first.")
    label = run_dir.name
    try:
        config = json.loads((run_dir / "config.json").read_text())["run"]
        label = f"{config['model']}{' + BAM' if config['bam'] else ''} ({run_dir.name})"
    except (OSError, ValueError, KeyError):
        pass
    return label, rows


def plot(run_dirs, path):
    """Writes a PNG: training and evaluation loss, and top-1 error, per
    epoch, one line per run (e.g. a baseline and its BAM model).

    Returns the number of runs drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [load_run(d) for d in run_dirs]
    figure, (loss_axes, error_axes) = plt.subplots(1, 2, figsize=(11, 4))
    for index, (label, rows) in enumerate(runs):
        color = f"C{index}"
        epochs = [r["epoch"] for r in rows]
        loss_axes.plot(epochs, [r["loss"] for r in rows], color=color,
                       linestyle="--", label=f"{label} train")
        loss_axes.plot(epochs, [r["eval_loss"] for r in rows], color=color,
                       label=f"{label} eval")
        error_axes.plot(epochs, [100 * (1 - r["accuracy"]) for r in rows],
                        color=color, linestyle="--", label=f"{label} train")
        error_axes.plot(epochs, [100 * r["eval_top1_error"] for r in rows],
                        color=color, label=f"{label} eval")
    loss_axes.set(title="loss", xlabel="epoch", ylabel="cross-entropy")
    error_axes.set(title="top-1 error", xlabel="epoch", ylabel="%")
    for axes in (loss_axes, error_axes):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    figure.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=100)
    plt.close(figure)
    write_atomically(path, image.getvalue())
    return len(runs)
