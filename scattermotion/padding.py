"""Input adapter: pad frames to a multiple of the network's stride, crop motion back (kept out of the model).

Padding only adds pixels around the image (no resizing), so motion values need no rescaling when cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class InputPadder:
    """Pads ``...×H×W`` tensors to multiples of ``stride`` (split evenly over both sides) and crops back.

    >>> padder = InputPadder(250, 333, stride=16)
    >>> frames, = padder.pad(frames)          # B×T×3×256×336
    >>> flow = padder.unpad(model(frames).flows)  # B×(T-1)×2×250×333
    """

    def __init__(self, height: int, width: int, stride: int, mode: str = "replicate"):
        if height < 1 or width < 1 or stride < 1:
            raise ValueError(f"InputPadder: bad size {height}x{width} or stride {stride}")
        self.height, self.width, self.stride, self.mode = height, width, stride, mode
        pad_h = (-height) % stride
        pad_w = (-width) % stride
        # F.pad order: (left, right, top, bottom)
        self.padding = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)

    @property
    def padded_size(self) -> tuple[int, int]:
        left, right, top, bottom = self.padding
        return self.height + top + bottom, self.width + left + right

    def pad(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        """Pad every tensor's last two dimensions (which must be ``H×W``); any leading dimensions are kept."""
        out = []
        for tensor in tensors:
            if tuple(tensor.shape[-2:]) != (self.height, self.width):
                raise ValueError(
                    f"InputPadder: expected ...x{self.height}x{self.width}, got {tuple(tensor.shape)}"
                )
            lead = tensor.shape[:-2]
            # Replicate / reflect padding wants a 4-D (N×C×H×W) tensor: fold the leading dimensions.
            flat = tensor.reshape(-1, 1, self.height, self.width)
            padded = F.pad(flat, self.padding, mode=self.mode)
            out.append(padded.reshape(*lead, *padded.shape[-2:]))
        return out

    def unpad(self, tensor: torch.Tensor) -> torch.Tensor:
        """Crop the padding off the last two dimensions."""
        left, _, top, _ = self.padding
        return tensor[..., top : top + self.height, left : left + self.width]
