"""Tests of translate/ (face data, datasets, models, training, evaluation, inference, its CLIs)."""
