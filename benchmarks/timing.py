"""Timing helpers shared by the benchmark scripts.

Contenders run alternately (ABBA order) within one run and ratios are the
median of per-round ratios, so that load from other processes hits both
sides alike. Numbers only: nothing passes or fails on time.
"""

import time

import numpy as np


def measure(contenders, warmup, repeats):
    """Times each zero-argument callable alternately; returns seconds.

    Round i runs the contenders in order, round i + 1 in reverse order (ABBA),
    so neither side always runs first after the other. The warm-up rounds
    (at least one, which traces and compiles) are not timed.
    """
    names = list(contenders)
    times = {name: [] for name in names}
    for round_index in range(max(warmup, 1) + repeats):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            start = time.perf_counter()
            contenders[name]()
            elapsed = time.perf_counter() - start
            if round_index >= max(warmup, 1):
                times[name].append(elapsed)
    return times


def summarize(seconds, batch_size):
    median = float(np.median(seconds))
    return {
        "median_ms": 1e3 * median,
        "p90_ms": 1e3 * float(np.percentile(seconds, 90)),
        "images_per_s": batch_size / median,
        "times_ms": [1e3 * s for s in seconds],
    }


def paired_ratio(numerator, denominator):
    """Median over rounds of numerator time / denominator time."""
    return float(np.median(np.asarray(numerator) / np.asarray(denominator)))
