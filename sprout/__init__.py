"""Sprout: a neural collaborative-filtering recommender platform."""

__version__ = "0.1.0"
