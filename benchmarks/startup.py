"""What a fresh process spends importing keras_bam and ending, with and
without the measures of keras_bam/__init__.py and keras_bam/commands/.

Each round starts four interpreters, alternating the variants (ABBA order,
so that load from other processes hits both alike):

- import: CPU seconds of `import keras` then `import keras_bam` (Keras
  loads with Python's garbage collector running, as before keras_bam paused
  it) against `import keras_bam` alone (Keras loads inside it, collector
  paused).
- exit: wall seconds from a process's last line to its end, after importing
  keras_bam and building a BAM, without and with `atexit.register(gc.freeze)`
  (what every command does).

Prints the medians and the median of the per-round ratios. Numbers only:
nothing passes or fails.

    python benchmarks/startup.py [--rounds 3]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

IMPORT = """
import time
start = time.process_time()
{first}import keras_bam
print(time.process_time() - start)
"""
EXIT = """
import atexit, gc, time
import keras, keras_bam
keras_bam.BAM()(keras.Input((8, 8, 16)))
{freeze}print(time.time(), flush=True)
"""


def _run(code):
    environ = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=environ, check=True)
    return child.stdout.strip().splitlines()[-1], time.time()


def import_seconds(collector_running):
    out, _ = _run(IMPORT.format(first="import keras\n" if collector_running else ""))
    return float(out)


def exit_seconds(freeze):
    out, ended = _run(EXIT.format(freeze="atexit.register(gc.freeze)\n" if freeze else ""))
    return ended - float(out)


def compare(name, measure, rounds):
    before, after = [], []
    for index in range(rounds):
        order = (True, False) if index % 2 == 0 else (False, True)
        for old in order + order[::-1]:
            (before if old else after).append(measure(old))
    ratios = [a / b for a, b in zip(after, before, strict=True)]
    print(f"{name:<8} before {statistics.median(before):6.2f} s   after "
          f"{statistics.median(after):6.2f} s   after/before "
          f"{statistics.median(ratios):.3f}   ({len(before)} runs each)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    compare("import", import_seconds, args.rounds)
    compare("exit", lambda old: exit_seconds(freeze=not old), args.rounds)


if __name__ == "__main__":
    main()
