"""Training: the shared GAN loop, one module per model family, optimizers, schedules, summaries."""
