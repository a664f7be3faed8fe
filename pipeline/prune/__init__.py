"""Dataset pruning: per-sample importance scores from a proxy model's training dynamics, and coreset selection."""
