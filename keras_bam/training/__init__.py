"""Training BAM models on tf.distribute (in progress: the strategy choice
and the custom loop with per-epoch checkpoints are here; input pipelines,
recipes and examples/train.py follow)."""

from keras_bam.training.loop import EpochLog, train
from keras_bam.training.strategy import (
    STRATEGIES,
    StrategyError,
    choose,
    parse_tf_config,
    resolve_strategy,
)

__all__ = ["STRATEGIES", "EpochLog", "StrategyError", "choose", "parse_tf_config",
           "resolve_strategy", "train"]
