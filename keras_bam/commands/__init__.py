"""The commands: the one layer that speaks in flags and combines the libraries.

Each module has a `build_parser()` and a `main(argv=None)` that returns the
exit code; the scripts in `export/` and `examples/` only call `main()`.

| command | module | script |
| --- | --- | --- |
| export (int8, float16, dynamic, float32, qat) | `commands.export` | `export/to_tflite.py` |
| training | `commands.train` | `examples/train.py` |
| the paper's ablation | `commands.ablation` | `examples/ablation.py` |
| attention figure | `commands.attention` | `examples/visualize_attention.py` |
| training curves | `commands.plot_training` | `examples/plot_training.py` |
| checkpoint to `.keras` | `commands.convert_checkpoint` | `examples/convert_checkpoint.py` |

Exit codes (`common`): 0 done; 1 rejected by a check, nothing written; 2 bad
input, one line on stderr, nothing written. The libraries below raise
errors that name their API arguments in backticks; `common.in_flags`
rewrites them as the command's flags. The libraries log (logger
`keras_bam`); `common.console` decides what reaches the console.
"""

import atexit
import gc

# The commands are modules run through their `main()`; nothing is re-exported.
__all__ = []

# A command's process ends sooner: Python's shutdown runs full garbage
# collections over the few hundred thousand objects that TensorFlow and
# Keras keep for the life of the process (1.3 s on 2 idle cores, 4 s on
# busy ones: benchmarks/startup.py); frozen at exit, they are left to the
# operating system, and the process ends in a fraction of a second. Exit
# handlers still run and files are still closed; only the collector's last
# passes are skipped.
atexit.register(gc.freeze)
