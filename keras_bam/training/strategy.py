"""Which tf.distribute strategy a training run uses.

`--strategy auto` picks, in order: TPUStrategy when this machine has a TPU,
MultiWorkerMirroredStrategy when TF_CONFIG names more than one task,
MirroredStrategy when there is more than one local GPU, the default strategy
otherwise. Probing for a TPU only happens where one can be (TPU_NAME or
COLAB_TPU_ADDR set, or /dev/accel* present): the resolver otherwise asks a
cloud metadata server, which on an offline machine can hang.
"""

import dataclasses
import glob
import json
import os

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")


class StrategyError(ValueError):
    """A strategy that cannot be set up here; the message says why."""


@dataclasses.dataclass
class TFConfig:
    cluster: dict  # task type -> list of "host:port"
    task_type: str
    task_index: int

    @property
    def num_workers(self):
        return sum(len(self.cluster.get(t, [])) for t in ("chief", "worker"))

    @property
    def is_chief(self):
        if "chief" in self.cluster:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0


def parse_tf_config(environ=None):
    """The TF_CONFIG environment variable, checked; None if unset."""
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise StrategyError(f"TF_CONFIG is not valid JSON ({error.msg} at "
                            f"character {error.pos}).") from None
    example = ('{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": '
               '{"type": "worker", "index": 0}}')
    if not isinstance(data, dict):
        raise StrategyError(
            f"TF_CONFIG must be a JSON object with \"cluster\" and \"task\", e.g. "
            f"{example}. Received: {text[:80]}.")
    cluster, task = data.get("cluster"), data.get("task")
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise StrategyError(
            'TF_CONFIG needs "cluster" and "task" objects, e.g. {"cluster": '
            '{"worker": ["host1:port", "host2:port"]}, "task": {"type": '
            '"worker", "index": 0}}.')
    for kind, addresses in cluster.items():
        if not (isinstance(addresses, list) and addresses
                and all(isinstance(a, str) and ":" in a for a in addresses)):
            raise StrategyError(
                f'TF_CONFIG cluster "{kind}" must be a non-empty list of '
                f'"host:port" strings. Received: {addresses!r}.')
    task_type, index = task.get("type"), task.get("index")
    if task_type not in cluster:
        raise StrategyError(f'TF_CONFIG task type {task_type!r} is not in the '
                            f"cluster ({', '.join(cluster)}).")
    if not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
        raise StrategyError(
            f"TF_CONFIG task index {index!r} is out of range for "
            f'"{task_type}" ({len(cluster[task_type])} address(es)).')
    return TFConfig(cluster, task_type, index)


def _has_tpu(environ):
    return bool(environ.get("TPU_NAME") or environ.get("COLAB_TPU_ADDR")
                or glob.glob("/dev/accel*"))


def choose(name, config, num_gpus, has_tpu):
    """(strategy name, why) for a `--strategy` value, without building it."""
    if name not in STRATEGIES:
        raise StrategyError(f"Unknown strategy {name!r}; choose one of "
                            f"{', '.join(STRATEGIES)}.")
    if name != "auto":
        if name == "multi_worker" and config is None:
            raise StrategyError(
                "--strategy multi_worker needs TF_CONFIG describing the "
                "cluster and this worker's task.")
        return name, "asked for"
    if has_tpu:
        return "tpu", "a TPU is attached"
    if config is not None and config.num_workers > 1:
        return "multi_worker", f"TF_CONFIG names {config.num_workers} workers"
    if num_gpus > 1:
        return "mirrored", f"{num_gpus} local GPUs"
    return "default", "one device"


def resolve_strategy(name="auto", environ=None):
    """(strategy, why) for a `--strategy` value; see the module docstring."""
    import tensorflow as tf

    environ = os.environ if environ is None else environ
    config = parse_tf_config(environ)
    # physical, not logical: listing logical devices starts the runtime, after
    # which MultiWorkerMirroredStrategy can no longer configure collectives.
    name, why = choose(name, config, len(tf.config.list_physical_devices("GPU")),
                       _has_tpu(environ))
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
                environ.get("TPU_NAME", ""))
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as error:
            raise StrategyError(f"No TPU could be reached ({error}). Use "
                                "--strategy auto or default.") from None
        return tf.distribute.TPUStrategy(resolver), why
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy(), why
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(), why
    return tf.distribute.get_strategy(), why
