"""Retraining: every weight trains from random initialisation (the paper's baseline 1).

Same model as fine-tuning; ``pretrained=False`` tells the runner to build the backbone without
weights, whatever ``--weights`` says, so the row measures the architecture alone.
"""

from __future__ import annotations

from . import register_method
from .fine_tuning import FullTuning

register_method("retraining", FullTuning, pretrained=False, paper_name="Retraining",
                source="baseline",
                description="all weights train from random init")
