"""Named configurations: `tiny` for tests, `small` for the one-command demo, `default` the recipe.

Every preset is the same recipe (deep autoencoder + closed-form item-item path, blended on
validation users, best validation step kept); they differ in size. `default` sizes its deep path
from the snapshot: fewer than `REFERENCE_MIN_USERS` training users get the Mult-DAE widths
(600 → 200 → 600), which the reference widths (2048 → 512 → 1024, 2048; 55.5M parameters at
6,000 shows) overfit; more get the reference widths.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from sprout.dataset.config import DatasetConfig
from sprout.model.config import ModelConfig
from sprout.training.config import TrainConfig


class Preset(BaseModel):
    """Dataset, model and training settings that belong together."""

    model_config = ConfigDict(frozen=True)

    name: str
    dataset: DatasetConfig
    model: ModelConfig
    train: TrainConfig
    sized_by_users: bool = False  # apply the size rule of `sized_for`

    def sized_for(self, train_users: int) -> Preset:
        """This preset for a snapshot with ``train_users`` training users (see the module docstring)."""
        if not self.sized_by_users or train_users >= REFERENCE_MIN_USERS:
            return self
        model = self.model.model_copy(update=COMPACT_WIDTHS)
        return self.model_copy(update={"model": model, "train": self.train.model_copy(update=COMPACT_TRAINING)})

    @model_validator(mode="after")
    def _same_corpus(self) -> "Preset":
        if self.dataset.corpus_size != self.model.corpus_size:
            raise ValueError("dataset.corpus_size and model.corpus_size must be equal")
        return self


REFERENCE_MIN_USERS = 20_000
COMPACT_WIDTHS = dict(encoder_hidden=600, bottleneck=200, decoder_hidden=(600,))
COMPACT_TRAINING = dict(batch_size=128, learning_rate=1e-3, eval_every=125, plateau_accumulation_size=50)

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny", dataset=DatasetConfig.tiny(),
        model=ModelConfig.tiny(item_item=True, presence_map=True, rating_neighbours=50), train=TrainConfig.tiny(),
    ),
    # A few minutes on two CPU cores: the one-command demo and smoke runs of the whole loop.
    "small": Preset(
        name="small",
        dataset=DatasetConfig(corpus_size=1500, min_counted_entries=10, n_validation_users=100, n_test_users=100),
        model=ModelConfig(corpus_size=1500, encoder_hidden=256, bottleneck=64, decoder_hidden=(128, 256), item_item=True,
                          presence_map=True, rating_neighbours=100),
        train=TrainConfig(batch_size=64, learning_rate=1e-3, max_steps=800, eval_every=200, checkpoint_every=200,
                          plateau_accumulation_size=50),
    ),
    "default": Preset(
        name="default", dataset=DatasetConfig(),
        model=ModelConfig(item_item=True, presence_map=True, rating_neighbours=200), train=TrainConfig(),
        sized_by_users=True,
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise KeyError(f"unknown config {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]
