"""Dataset distillation: differentiable augmentation, expert trajectories, and the distillers."""
