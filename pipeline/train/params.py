"""`TrainParams`: the recipe and run settings of the `train:` section, and of every section parsed the same way
(`architectures:`, `regime2:`, `regime3:`). Read by the train stage (pipeline/stages/train.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.config import off_switch, require
from pipeline.io.bitpack import check_bits
from pipeline.io.streamed import window_shuffle
from pipeline.models.registry import model_names
from pipeline.train.engine import Recipe


@dataclass(frozen=True)
class TrainParams:
    models: list[str] = field(default_factory=lambda: ["convnetd3"])
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    bits: list[int] = field(default_factory=lambda: [1, 2, 4])  # DCQ bit depths trained on (palette.bits subset)
    recipe: Recipe = field(default_factory=Recipe)
    # A coreset of n < N images trains for as many steps as the full set ("iterations", the protocol of the
    # pruning papers) or for recipe.epochs passes over its n images ("epochs": far fewer steps).
    coreset_budget: Literal["iterations", "epochs"] = "iterations"
    eval_batch_size: int = 500
    # > 0: each epoch's order is window-shuffled (random blocks of stream_block rows, shuffled within windows of
    # stream_window images) and a full-colour set streams from its store, holding ~3 windows, not the whole set
    stream_window: int = off_switch(0)
    stream_block: int = off_switch(256)

    def __post_init__(self):
        window_shuffle(self.stream_window, self.stream_block)  # its range checks
        unknown = [m for m in self.models if m not in model_names()]
        require(not unknown, f"models={unknown} not in the model registry {model_names()}")
        for q in self.bits:
            check_bits(q)
        require(self.eval_batch_size >= 1, f"eval_batch_size={self.eval_batch_size} must be >= 1")
