"""The --strategy choice and TF_CONFIG checks of the training pipeline."""

import json

import pytest
import tensorflow as tf

from keras_bam.training import StrategyError, choose, parse_tf_config, resolve_strategy

TWO_WORKERS = {"cluster": {"worker": ["127.0.0.1:20001", "127.0.0.1:20002"]},
               "task": {"type": "worker", "index": 1}}


def env(config):
    return {"TF_CONFIG": json.dumps(config) if isinstance(config, dict) else config}


def test_tf_config_parsed():
    config = parse_tf_config(env(TWO_WORKERS))
    assert config.num_workers == 2 and config.task_index == 1
    assert not config.is_chief
    assert parse_tf_config(env({**TWO_WORKERS, "task": {"type": "worker",
                                                        "index": 0}})).is_chief
    assert parse_tf_config({}) is None


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ({"cluster": {"worker": ["a:1"]}}, 'needs "cluster" and "task"'),
    ({"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}},
     "non-empty list"),
    ({"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}},
     "task type 'ps' is not in the cluster"),
    ({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}},
     "index 3 is out of range"),
    # Valid JSON of the wrong shape (issue 15: an AttributeError before).
    ("[]", 'must be a JSON object with "cluster" and "task".*Received: \\[\\]'),
    ("null", "must be a JSON object.*Received: null"),
    ('"worker"', 'must be a JSON object.*Received: "worker"'),
    ("3", "must be a JSON object"),
])
def test_malformed_tf_config(text, message):
    with pytest.raises(StrategyError, match=message):
        parse_tf_config(env(text))


@pytest.mark.parametrize("name, config, gpus, tpu, expected", [
    ("auto", None, 0, False, "default"),
    ("auto", None, 1, False, "default"),
    ("auto", None, 4, False, "mirrored"),
    ("auto", "two", 4, False, "multi_worker"),
    ("auto", "two", 0, True, "tpu"),
    ("mirrored", None, 0, False, "mirrored"),
])
def test_auto_choice(name, config, gpus, tpu, expected):
    config = parse_tf_config(env(TWO_WORKERS)) if config else None
    assert choose(name, config, gpus, tpu)[0] == expected


def test_choice_errors():
    with pytest.raises(StrategyError, match="Unknown strategy 'gpu'.*mirrored"):
        choose("gpu", None, 0, False)
    with pytest.raises(StrategyError, match="needs TF_CONFIG"):
        choose("multi_worker", None, 0, False)


def test_resolve_on_this_machine():
    strategy, why = resolve_strategy("auto", environ={})
    assert strategy.num_replicas_in_sync == 1 and why == "one device"
    assert isinstance(resolve_strategy("mirrored", environ={})[0],
                      tf.distribute.MirroredStrategy)
