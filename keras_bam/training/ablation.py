"""The paper's ablation (Table 1) as training runs with one data, seed and
budget: the baseline, then BAM with one option changed at a time.

Each variant is an ordinary run (`keras_bam.training.run`) in its own
folder under the ablation's output, so an interrupted ablation resumes
variant by variant, and each run can be plotted or exported on its own.
"""

import dataclasses
import json
import logging
import pathlib

from keras_bam.atomic import write_atomically
from keras_bam.training.run import RunConfig, run

logger = logging.getLogger(__name__)

# name -> (BAM inserted, BAM options, what the paper's Table 1 varies)
VARIANTS = {
    "baseline": (False, {}, "no BAM"),
    "bam": (True, {}, "the paper's BAM: sum, sigmoid, r=16, d=4"),
    "product": (True, {"combine": "product"}, "Mc x Ms (the authors' code)"),
    "max": (True, {"combine": "max"}, "max(Mc, Ms)"),
    "channel_only": (True, {"use_spatial_gate": False}, "channel gate alone"),
    "spatial_only": (True, {"use_channel_gate": False}, "spatial gate alone"),
    # r=2, not the paper's 4-32: the default minimum hidden width (8) makes
    # r=4 and r=16 the same network at SmallCNN's 16 and 32 channels.
    "r2": (True, {"reduction_ratio": 2}, "reduction ratio 2"),
    "d1": (True, {"dilation_rate": 1}, "dilation 1"),
    "d2": (True, {"dilation_rate": 2}, "dilation 2"),
    "tanh": (True, {"gate_activation": "tanh"}, "tanh gate instead of sigmoid"),
}


@dataclasses.dataclass
class AblationRow:
    variant: str
    description: str
    params: int
    macs: int
    top1_error: float
    top5_error: float


def run_ablation(output, variants=None, **run_options):
    """Trains each variant (default: all of `VARIANTS`) with the same
    `run_options` (RunConfig fields: model, dataset, epochs, batch_size,
    seed, ...) into `output/<variant>`; returns [AblationRow].

    Logs one line per variant as it starts and ends (logger
    `keras_bam.training.ablation`); each run logs its own progress
    (`keras_bam.training.run`).
    """
    names = list(variants or VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"Unknown ablation variant(s) {', '.join(unknown)} in "
                         f"`variants`; choose from {', '.join(VARIANTS)}.")
    rows = []
    for name in names:
        bam, options, description = VARIANTS[name]
        logger.info("--- %s: %s", name, description)
        config = RunConfig(output=str(pathlib.Path(output) / name), bam=bam,
                           bam_options=dict(options), **run_options)
        metrics = run(config)
        logger.info("%s: top-1 error %.4f, top-5 error %.4f", name,
                    metrics["top1_error"], metrics["top5_error"])
        rows.append(AblationRow(name, description, metrics["params"], metrics["macs"],
                                metrics["top1_error"], metrics["top5_error"]))
    write_atomically(pathlib.Path(output) / "ablation.json",
                     json.dumps([dataclasses.asdict(r) for r in rows], indent=2) + "\n")
    return rows


def format_table(rows):
    """A Markdown table like the paper's Table 1 (errors in %)."""
    lines = ["| variant | description | params | MACs | top-1 err. (%) | top-5 err. (%) |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r.variant} | {r.description} | {r.params:,} | "
                     f"{r.macs / 1e6:.2f}M | {100 * r.top1_error:.2f} | "
                     f"{100 * r.top5_error:.2f} |")
    return "\n".join(lines)
