"""Training BAM models on tf.distribute (work in progress: the strategy
choice is here; the loop, input pipelines and examples/train.py follow)."""

from keras_bam.training.strategy import (
    STRATEGIES,
    StrategyError,
    choose,
    parse_tf_config,
    resolve_strategy,
)

__all__ = ["STRATEGIES", "StrategyError", "choose", "parse_tf_config",
           "resolve_strategy"]
