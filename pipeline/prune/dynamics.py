"""Per-sample training dynamics of a proxy model, and the importance scores drawn from them.

Recorded on every training forward pass (the augmented batch the model learns from):
  AUM         area under the margin (Pleiss et al. 2020): mean over all passes of the assigned logit minus
              the largest other logit. Low = hard / possibly mislabelled.
  EL2N        (Paul et al. 2021): mean over the passes in the first `el2n_epochs` epochs of
              ||softmax(logits) - onehot(label)||_2. High = hard.
  forgetting  (Toneva et al. 2019): number of times a sample goes from correctly to wrongly classified
              between consecutive passes; a sample never classified correctly counts as forgotten
              `epochs + 1` times (it is the hardest kind). High = hard.
Scored after training on the un-augmented images:
  entropy     (Coleman et al. 2020): entropy of the final proxy's softmax. High = uncertain.

`importance(name, scores)` turns each into "higher = harder", the order every selector uses.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SCORES = ("aum", "el2n", "forgetting", "entropy")


class TrainingDynamics:
    def __init__(self, labels: torch.Tensor, epochs: int, el2n_epochs: int):
        n = len(labels)
        dev = labels.device
        self.labels = labels
        self.epochs = epochs
        self.el2n_epochs = el2n_epochs
        self.passes = torch.zeros(n, dtype=torch.int64, device=dev)
        self.margin_sum = torch.zeros(n, dtype=torch.float64, device=dev)
        self.el2n_sum = torch.zeros(n, dtype=torch.float64, device=dev)
        self.el2n_passes = torch.zeros(n, dtype=torch.int64, device=dev)
        self.last_correct = torch.zeros(n, dtype=torch.bool, device=dev)
        self.ever_correct = torch.zeros(n, dtype=torch.bool, device=dev)
        self.forgotten = torch.zeros(n, dtype=torch.int64, device=dev)

    def __call__(self, epoch: int, idx: torch.Tensor, logits: torch.Tensor) -> None:
        y = self.labels[idx]
        assigned = logits.gather(1, y[:, None])[:, 0]
        others = logits.scatter(1, y[:, None], float("-inf")).amax(1)
        self.margin_sum[idx] += (assigned - others).double()
        self.passes[idx] += 1
        if epoch < self.el2n_epochs:
            error = F.softmax(logits, 1) - F.one_hot(y, logits.shape[1]).float()
            self.el2n_sum[idx] += error.norm(dim=1).double()
            self.el2n_passes[idx] += 1
        correct = logits.argmax(1) == y
        self.forgotten[idx] += (self.last_correct[idx] & ~correct).long()
        self.last_correct[idx] = correct
        self.ever_correct[idx] |= correct

    def scores(self, final_logits: torch.Tensor) -> dict[str, np.ndarray]:
        """float32 (N,) arrays. Training uses full batches only, so a sample can miss an epoch; one that no
        recorded pass saw takes its AUM / EL2N from the final model's logits on the un-augmented image."""
        final_logits = final_logits.to(self.labels.device).double()
        y = self.labels
        final_margin = final_logits.gather(1, y[:, None])[:, 0] - final_logits.scatter(1, y[:, None], float("-inf")).amax(1)
        probs = F.softmax(final_logits, 1)
        final_el2n = (probs - F.one_hot(y, probs.shape[1]).double()).norm(dim=1)
        entropy = -(probs * probs.clamp_min(1e-30).log()).sum(1)
        forgetting = torch.where(self.ever_correct, self.forgotten, torch.full_like(self.forgotten, self.epochs + 1))
        out = {
            "aum": torch.where(self.passes > 0, self.margin_sum / self.passes.clamp_min(1), final_margin),
            "el2n": torch.where(self.el2n_passes > 0, self.el2n_sum / self.el2n_passes.clamp_min(1), final_el2n),
            "forgetting": forgetting.double(),
            "entropy": entropy,
        }
        return {k: v.float().cpu().numpy() for k, v in out.items()}


def importance(name: str, scores: dict[str, np.ndarray]) -> np.ndarray:
    """Higher = harder / more important, for every score."""
    if name not in SCORES:
        raise KeyError(name)
    values = scores[name].astype(np.float64)
    return -values if name == "aum" else values
