"""Training: the hyperparameters and their per-architecture defaults (``settings``, TF-free) and the loop (``fit``)."""
