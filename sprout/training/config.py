"""Training hyper-parameters: every number of the reference recipe is a field with its default."""

from __future__ import annotations

from pydantic import BaseModel, Field


class TrainConfig(BaseModel):
    batch_size: int = Field(512, ge=1)
    learning_rate: float = Field(3e-4, gt=0)
    plateau_patience: int = Field(5, ge=0)
    plateau_cooldown: int = Field(1, ge=0)
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    plateau_rtol: float = Field(1e-4, ge=0)
    plateau_accumulation_size: int = Field(200, ge=1)
    min_lr_scale: float = Field(1e-6, gt=0, description="Stop when the plateau scale falls below this.")
    max_steps: int = Field(50_000, ge=1)
    dropout_min: float = Field(0.24, ge=0, lt=1)
    dropout_max: float = Field(0.56, ge=0, lt=1)
    huber_delta: float = Field(1.0, gt=0)
    kept_target_weight: float = Field(
        1.0, ge=0, le=1,
        description="Presence-loss weight of the entries the input kept; dropped ones weigh 1 (0: emphasised "
        "denoising, scored only on what the network could not copy).",
    )
    weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay of the layers' kernels (AdamW).")
    encoder_rating_gradient: float = Field(
        1.0, ge=0, le=1,
        description="Share of the rating loss's gradient that reaches the shared encoder (0: the encoder learns "
        "from the presence loss alone, so the rating head cannot starve it).",
    )
    kl_weight: float = Field(0.2, ge=0, description="Largest weight of the KL term (variational models only).")
    kl_anneal_steps: int = Field(
        2000, ge=1, description="Steps over which the KL weight rises linearly from 0 to kl_weight."
    )
    eval_every: int = Field(1000, ge=1, description="Steps between validation passes.")
    checkpoint_every: int = Field(500, ge=1, description="Steps between checkpoints.")
    validation_users: int = Field(500, ge=0, description="Validation users scored each pass (0 = all).")
    early_stopping_patience: int = Field(
        5, ge=1, description="Stop after this many validation passes without a better NDCG@100; the best step is kept."
    )
    item_item_l2: tuple[float, ...] = Field(
        (50.0, 100.0, 200.0), min_length=1, description="Ridge λ grid of the closed-form item-item path."
    )
    item_item_dropout: tuple[float, ...] = Field(
        (0.25, 0.4), min_length=1, description="Emphasised-denoising rate p grid of the item-item path."
    )
    item_item_user_weight_powers: tuple[float, ...] = Field(
        (0.0, 0.25, 0.5), min_length=1,
        description="Candidate powers of each training user's weight n^-power in the item-item path's Gram "
        "matrix, chosen on validation at the chosen λ and p (0 = every entry alike, plain EDLAE).",
    )
    item_item_popularity_powers: tuple[float, ...] = Field(
        (0.0, 0.05, 0.1, 0.15, 0.2), min_length=1,
        description="Candidate powers of the item-item path's popularity discount (show j's column of B divided "
        "by its training share^power), chosen on validation together with the user weighting (0 = none).",
    )
    blend_linear_scales: tuple[float, ...] = Field(
        (0.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 400.0, 800.0), min_length=1,
        description="Scales s of x·B tried when blending it with the deep presence logits (on anime-5k 200 won on "
        "two seeds of three when it was the largest, so the grid goes on past it).",
    )
    training_entry_thresholds: tuple[int, ...] = Field(
        (1, 5, 10, 30), min_length=1,
        description="Candidate minimum entries of the training users learned from; the one whose item-item "
        "path ranks validation users best is used (one EDLAE fit per candidate, at the first λ and p).",
    )
    rating_shrinkages: tuple[float, ...] = Field(
        (100.0, 400.0, 1600.0), min_length=1,
        description="Shrinkage grid of the rating path's neighbour similarities; the one whose blend has the "
        "lowest validation MAE wins.",
    )
    refit_on_validation: bool = Field(
        True,
        description="After every choice is made on validation users, fit the closed-form parts (item-item B, "
        "rating biases and neighbourhoods) again on training and validation users together.",
    )
    devices: int = Field(
        1, ge=1, description="Devices the batch is split over (data parallel; the weights replicated on each)."
    )
    seed: int = 0

    @classmethod
    def tiny(cls) -> "TrainConfig":
        return cls(
            batch_size=32, learning_rate=3e-3, max_steps=300, plateau_accumulation_size=20, plateau_patience=3,
            eval_every=100, checkpoint_every=50,
        )
