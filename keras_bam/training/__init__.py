"""Training BAM models on tf.distribute, fed by tensorflow-datasets.

`run(RunConfig(...))` trains; `python examples/train.py`
(`keras_bam.commands.train`) is the same from the command line. The parts:
`strategy` (which tf.distribute strategy), `data` and `augment` (tf.data
pipelines over `keras_bam.data`'s sources), `recipes` (the paper's optimizer
and schedules), `models` (the backbones by snake-case name, preprocessing
inside), `loop` (the custom loop over `strategy.run`), `history` (the
per-epoch log and its plot), `quick` (`model.fit` on arrays, for the
default model), `ablation` (the paper's Table 1 as runs). No flags here.
"""

from keras_bam.training.data import DATASETS, DataInfo, make_datasets
from keras_bam.training.loop import EpochLog, train
from keras_bam.training.models import MODELS, build_model
from keras_bam.training.quick import fit_in_memory
from keras_bam.training.recipes import RECIPES, Recipe, learning_rate_schedule
from keras_bam.training.run import RunConfig, RunError, run
from keras_bam.training.strategy import (
    STRATEGIES,
    StrategyError,
    choose,
    parse_tf_config,
    resolve_strategy,
)

__all__ = ["DATASETS", "MODELS", "RECIPES", "STRATEGIES", "DataInfo", "EpochLog",
           "Recipe", "RunConfig", "RunError", "StrategyError", "build_model",
           "choose", "fit_in_memory", "learning_rate_schedule", "make_datasets", "parse_tf_config",
           "resolve_strategy", "run", "train"]
