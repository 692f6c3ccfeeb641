"""Named configurations: `tiny` for tests and smoke runs, `default` for the reference model."""

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

    @model_validator(mode="after")
    def _same_corpus(self) -> "Preset":
        if self.dataset.corpus_size != self.model.corpus_size:
            raise ValueError("dataset.corpus_size and model.corpus_size must be equal")
        return self


PRESETS: dict[str, Preset] = {
    "tiny": Preset(name="tiny", dataset=DatasetConfig.tiny(), model=ModelConfig.tiny(), train=TrainConfig.tiny()),
    # A few minutes on two CPU cores: the one-command demo and smoke runs of the whole loop.
    "small": Preset(
        name="small",
        dataset=DatasetConfig(corpus_size=1500, min_counted_entries=10, n_validation_users=100, n_test_users=100),
        model=ModelConfig(corpus_size=1500, encoder_hidden=256, bottleneck=64, decoder_hidden=(128, 256)),
        train=TrainConfig(batch_size=64, learning_rate=1e-3, max_steps=800, eval_every=200, checkpoint_every=200,
                          plateau_accumulation_size=50),
    ),
    "default": Preset(name="default", dataset=DatasetConfig(), model=ModelConfig(), train=TrainConfig()),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise KeyError(f"unknown config {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]
