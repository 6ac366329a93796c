"""Seeded, stratified splits: the validation hold-out, subsets, derived test splits.

Its own module because both the dataset specs (base.py: the hold-out) and the pipeline use it.
"""

from __future__ import annotations

import torch


def stratified_split(labels: torch.Tensor, fraction: float, seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded, stratified split of indices into (kept, held-out): ``fraction`` of each class held
    out (at least one image of every class with two or more)."""
    gen = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_held = max(1, round(len(idx) * fraction)) if len(idx) > 1 else 0
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    return torch.sort(torch.cat(kept)).values, torch.sort(torch.cat(held)).values


def stratified_subset(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Indices of a seeded subset of about ``count`` images with the class proportions kept."""
    if count >= len(labels):
        return torch.arange(len(labels))
    _, chosen = stratified_split(labels, count / len(labels), seed)
    return chosen
