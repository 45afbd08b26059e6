"""Evaluation: metrics (SPEC §7), adversarial sets on disk, predictions and sample selection, direct and transfer
evaluation, and the gradient-masking report."""
