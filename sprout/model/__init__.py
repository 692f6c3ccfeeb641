"""The two-head denoising autoencoder: config, network, sparse first layer and weight files."""

from sprout.model.autoencoder import Autoencoder, DecoderHead, abstract_autoencoder, parameter_count
from sprout.model.config import ModelConfig
from sprout.model.first_layer import dense_profile, entry_rows, first_layer_dense, first_layer_sparse
from sprout.model.weights import load_config, load_weights, save_weights

__all__ = [
    "Autoencoder",
    "DecoderHead",
    "ModelConfig",
    "abstract_autoencoder",
    "dense_profile",
    "entry_rows",
    "first_layer_dense",
    "first_layer_sparse",
    "load_config",
    "load_weights",
    "parameter_count",
    "save_weights",
]
