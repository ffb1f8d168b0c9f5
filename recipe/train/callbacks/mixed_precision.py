"""bf16 autocast for the forward pass and loss, on CUDA (and CPU when asked).

bf16 has fp32's exponent range, so no gradient scaler is needed. The callback swaps the
trainer's ``autocast`` context factory; on CUDA it also puts 4-D models and each 4-D input
batch in channels_last, which tensor cores prefer (an input left in NCHW costs a layout conversion in
the first convolution of every step).
"""

from __future__ import annotations

import functools

import torch

from recipe.train.callbacks.base import Callback


class MixedPrecision(Callback):
    """Args:
    dtype: the autocast dtype. Default torch.bfloat16.
    """

    order = -40

    def __init__(self, dtype: torch.dtype = torch.bfloat16) -> None:
        self.dtype = dtype

    def before_fit(self) -> None:
        t = self.trainer
        t.autocast = functools.partial(torch.autocast, device_type=t.device.type, dtype=self.dtype)
        self._channels_last = t.device.type == "cuda" and any(p.dim() == 4 for p in t.model.parameters())
        if self._channels_last:
            t.model.to(memory_format=torch.channels_last)

    def before_batch(self) -> None:
        xb = self.trainer.xb
        if self._channels_last and isinstance(xb, torch.Tensor) and xb.dim() == 4:
            self.trainer.xb = xb.contiguous(memory_format=torch.channels_last)
