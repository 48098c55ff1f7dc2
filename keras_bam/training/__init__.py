"""Training BAM models on tf.distribute, fed by tensorflow-datasets.

`python examples/train.py` is `cli.main`; `run(RunConfig(...))` is the same
from Python. The parts: `strategy` (which tf.distribute strategy),
`data` and `augment` (tf.data pipelines), `recipes` (the paper's optimizer
and schedules), `models` (the backbones by snake-case name, preprocessing
inside), `loop` (the custom loop over `strategy.run`), `history` (the
per-epoch log and its plot).
"""

from keras_bam.training.data import DATASETS, DataInfo, make_datasets
from keras_bam.training.loop import EpochLog, train
from keras_bam.training.models import MODELS, build_model
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
           "choose", "learning_rate_schedule", "make_datasets", "parse_tf_config",
           "resolve_strategy", "run", "train"]
