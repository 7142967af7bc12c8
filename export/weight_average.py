"""An exponential moving average of a model's weights over the training steps.

A small labelled set gives a noisy last step: the average of the weights over the last few
hundred steps usually answers better than any one of them, at no cost when serving (the
average is an ordinary set of weights). Floating-point tensors (weights, batch-norm running
statistics) are averaged; integer ones (batch counters, index buffers) are copied, since a
weighted mean of indices would not be an index.
"""

from __future__ import annotations

import torch


class WeightAverage:
    """``decay`` per step; early on the average follows the model more closely (the
    ``(1 + step) / (10 + step)`` ramp), so the random head's first weights soon fade out."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"an averaging decay is between 0 and 1, not {decay}")
        self.decay = decay
        self.steps = 0
        self.state = {name: value.detach().clone() for name, value in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.steps += 1
        keep = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for name, value in model.state_dict().items():
            average = self.state[name]
            if average.is_floating_point():
                average.lerp_(value.detach(), 1.0 - keep)
            else:
                average.copy_(value)

    def copy_to(self, model: torch.nn.Module) -> None:
        """Load the averaged weights into ``model`` (of the same architecture)."""
        model.load_state_dict(self.state)
