"""Data streams: one checkpointed sampler per stream a method consumes.

Why: a semi-supervised method draws a labelled batch and an unlabelled batch every step, from
pools of very different sizes (40 labelled vs 1,600 unlabelled images); each stream needs its own
epoch-wise shuffling, its own seeded generator and its own position, all saved in ``last.pt`` so
that a resumed run draws exactly the batches the uninterrupted one would have. Under DDP the
global batch (batch × world size) is drawn with the shared generator and sharded across ranks.
"""
from __future__ import annotations

from typing import Any

import torch


class Stream:
    """Epoch-wise random permutations of ``range(n)``, drawn with its own generator."""

    def __init__(self, n: int, seed: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        if n < 1:
            raise ValueError("a data stream needs at least one item")
        self.n, self.batch_size, self.rank, self.world_size = int(n), int(batch_size), int(rank), int(world_size)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.perm = torch.empty(0, dtype=torch.long)
        self.pos = 0

    def next_indices(self) -> torch.Tensor:
        """This rank's indices of the next global batch (``batch_size`` of them); a new
        permutation starts whenever the current one is used up (batches may span epochs)."""
        need = self.batch_size * self.world_size
        idx: list[torch.Tensor] = []
        while need > 0:
            if self.pos >= len(self.perm):
                self.perm = torch.randperm(self.n, generator=self.generator)
                self.pos = 0
            take = self.perm[self.pos:self.pos + need]
            self.pos += len(take)
            need -= len(take)
            idx.append(take)
        glob = torch.cat(idx)
        return glob[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.perm = state["perm"]
        self.pos = int(state["pos"])
