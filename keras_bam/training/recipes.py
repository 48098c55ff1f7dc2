"""Training recipes of the BAM paper and the authors' code, as data.

A recipe names an augmentation (`keras_bam.training.data` applies it) and
the optimizer that goes with it. The BAM paper (arXiv 1807.06514, section
4) trains every network with the schedule of the baseline it is compared
with; the authors' released `train_imagenet.py` is the PyTorch ImageNet
example with those settings:

| recipe | augmentation | optimizer | lr, batch | lr / 10 at | epochs |
| --- | --- | --- | --- | --- | --- |
| cifar | 4-pixel zero pad, random crop, flip | SGD 0.9, wd 1e-4 | 0.1 at 128 | 50 %, 75 % | 200 |
| imagenet | random-resized crop, flip | SGD 0.9, wd 1e-4 | 0.1 at 256 | every 30 epochs | 90 |
| digits | 4-px pad, random crop, no flip | SGD 0.9, wd 1e-4 | 0.1 at 128 | 50 %, 75 % | 30 |

The digits recipe is ours, for the embedded offline dataset: a flipped
digit is another digit (or none), so it only shifts. CIFAR's epoch count is
the one of the issue's command; the paper gives its schedule as fractions.

A different global batch size scales the learning rate linearly
(`scaled_learning_rate`): Goyal et al., "Accurate, Large Minibatch SGD"
(arXiv 1706.02677), who also warm up over 5 epochs for batches above about
8k, which these schedules leave out.
"""

import dataclasses
import difflib


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One recipe's defaults.

    `weight_decay` is PyTorch SGD's: `weight_decay * w` added to the
    gradient before momentum, i.e. an L2 penalty of `weight_decay / 2 *
    ||w||^2` in the loss. `keras.optimizers.SGD(weight_decay=...)` instead
    shrinks weights by `lr * weight_decay` outside momentum; `optimizer()`
    below uses the Keras form, which is close at momentum 0.9 but not equal.
    Either way biases and batch-norm parameters are decayed too, as in the
    authors' code.
    """

    name: str
    augmentation: str
    momentum: float = 0.9
    weight_decay: float = 1e-4
    base_learning_rate: float = 0.1
    reference_batch_size: int = 128
    epochs: int = 200
    decay_fractions: tuple = ()  # lr / 10 at these fractions of training
    decay_every_epochs: int = 0  # or every this many epochs
    decay_factor: float = 0.1

    def learning_rate(self, global_batch_size):
        """The base learning rate scaled to `global_batch_size`."""
        return scaled_learning_rate(self.base_learning_rate, global_batch_size,
                                    self.reference_batch_size)

    def optimizer(self, learning_rate):
        """`keras.optimizers.SGD` with this recipe's momentum and weight
        decay; `learning_rate` a float or a schedule."""
        import keras

        return keras.optimizers.SGD(learning_rate=learning_rate,
                                    momentum=self.momentum,
                                    weight_decay=self.weight_decay)


RECIPES = {
    "cifar": Recipe(
        "cifar", "4-pixel zero pad (1/8 of the side), random crop back, "
        "horizontal flip", reference_batch_size=128, epochs=200,
        decay_fractions=(0.5, 0.75)),
    "imagenet": Recipe(
        "imagenet", "random-resized crop (area 8-100 %, aspect 3/4-4/3) and "
        "horizontal flip; evaluation: resize to 256/224 of the size, center "
        "crop", reference_batch_size=256, epochs=90, decay_every_epochs=30),
    "digits": Recipe(
        "digits", "4-pixel zero pad (1/8 of the side), random crop back; no "
        "flip", reference_batch_size=128, epochs=30,
        decay_fractions=(0.5, 0.75)),
}


def get_recipe(recipe):
    """A `Recipe` from its name (or a `Recipe`, returned as is)."""
    if isinstance(recipe, Recipe):
        return recipe
    if recipe not in RECIPES:
        close = difflib.get_close_matches(str(recipe), RECIPES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"Unknown recipe {recipe!r}; choose one of "
                         f"{', '.join(RECIPES)}.{hint}")
    return RECIPES[recipe]


def scaled_learning_rate(base_lr, global_batch, reference_batch):
    """The linear scaling rule: `base_lr * global_batch / reference_batch`.

    When the batch grows k times, each step averages k times more images,
    so taking k times larger steps keeps the same progress per image
    (Goyal et al., arXiv 1706.02677). E.g. the ImageNet recipe's 0.1 at 256
    is 0.4 at a global batch of 1024 and 0.05 at 128.
    """
    for name, value in (("global_batch", global_batch),
                        ("reference_batch", reference_batch)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer. Received: "
                             f"{value!r}.")
    return base_lr * global_batch / reference_batch


def decay_epochs(recipe, epochs):
    """The epochs (float, exclusive of 0 and `epochs`) where the learning
    rate is divided by the recipe's factor."""
    recipe = get_recipe(recipe)
    if recipe.decay_every_epochs:
        return [float(e) for e in range(recipe.decay_every_epochs, epochs,
                                        recipe.decay_every_epochs)]
    return [fraction * epochs for fraction in recipe.decay_fractions]


def learning_rate_schedule(recipe, base_lr, steps_per_epoch, epochs):
    """A `keras.optimizers.schedules.PiecewiseConstantDecay` of the recipe.

    `base_lr` is used as given (scale it first with `scaled_learning_rate`).
    CIFAR and digits: `base_lr`, divided by 10 at 50 % and 75 % of the
    `steps_per_epoch * epochs` steps. ImageNet: divided by 10 every 30
    epochs (epochs 30 and 60 of 90). The schedule takes the optimizer's
    step count, so steps `[0, boundary]` use the value before the boundary.
    A run too short for any decay gets one boundary at its last step,
    which it never passes.
    """
    for name, value in (("steps_per_epoch", steps_per_epoch), ("epochs", epochs)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer. Received: "
                             f"{value!r}.")
    import keras

    recipe = get_recipe(recipe)
    total = steps_per_epoch * epochs
    boundaries = []
    for epoch in decay_epochs(recipe, epochs):
        step = int(round(epoch * steps_per_epoch))
        if 0 < step < total and (not boundaries or step > boundaries[-1]):
            boundaries.append(step)
    if not boundaries:
        boundaries = [total]
    values = [base_lr * recipe.decay_factor ** i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
