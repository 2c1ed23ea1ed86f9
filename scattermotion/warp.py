"""Backward warping with a dense motion field (``grid_sample``), pixel-exact.

``backward_warp(image, flow)`` samples ``image`` at ``(x + u, y + v)`` for every pixel ``(x, y)``: with
``image`` = frame t+1 and ``flow`` = motion t → t+1, the result is frame t+1 brought back onto frame t.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_grid(
    height: int, width: int, device: torch.device | None = None, dtype=torch.float32
) -> torch.Tensor:
    """``1×2×H×W`` pixel coordinates: channel 0 is x (column), channel 1 is y (row)."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack((xs, ys))[None]


def flow_warp_coords(flow: torch.Tensor) -> torch.Tensor:
    """Absolute sampling coordinates ``(x + u, y + v)`` as ``B×2×H×W`` (x first)."""
    _, _, height, width = flow.shape
    return pixel_grid(height, width, flow.device, flow.dtype) + flow


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``image`` (B×C×H×W) at ``pixel + flow`` (B×2×H×W, pixels); return ``(warped, valid)``.

    ``valid`` (B×1×H×W, float 0/1) is 0 where the sample point lies outside the image; there the value comes
    from the nearest border pixel (border padding keeps gradients finite instead of fading to zero).
    """
    coords = _checked_coords(image, flow)
    return sample_points(image, coords), _inside(coords)[:, None].to(image.dtype)


def warp_features(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``backward_warp``'s ``warped`` alone: the decoder's passes warp features with every motion update and
    never read ``valid`` (its comparisons were a dozen small ops a pass)."""
    return sample_points(image, _checked_coords(image, flow))


def _checked_coords(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    if image.shape[-2:] != flow.shape[-2:] or flow.shape[1] != 2 or image.shape[0] != flow.shape[0]:
        raise ValueError(
            f"backward_warp: image {tuple(image.shape)} and flow {tuple(flow.shape)} do not match"
        )
    if not flow.is_floating_point():
        raise ValueError(f"backward_warp: flow must be floating point, got {flow.dtype}")
    return flow_warp_coords(flow)


def sample_points(image: torch.Tensor, coords: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """``image`` (``B×C×H×W``) sampled at absolute pixel ``coords`` (``B×2×h×w``, x first; any grid, such as
    every second pixel), border values outside; ``mode`` as ``grid_sample``'s."""
    height, width = image.shape[-2:]
    # align_corners=True maps -1 / +1 to the centres of the first / last pixel: x_norm = 2x / (W - 1) - 1.
    # Python scalars (not a tensor) so an ONNX trace keeps the scale tied to the input's size.
    x, y = coords[:, 0], coords[:, 1]
    grid = torch.stack((x * (2.0 / max(width - 1, 1)) - 1.0, y * (2.0 / max(height - 1, 1)) - 1.0), dim=-1)
    return F.grid_sample(image, grid, mode=mode, padding_mode="border", align_corners=True)


def _inside(coords: torch.Tensor) -> torch.Tensor:
    """``B×H×W`` bool: the ``B×2×H×W`` absolute coordinates lie inside the ``H×W`` image."""
    height, width = coords.shape[-2:]
    x, y = coords[:, 0], coords[:, 1]
    return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def lands_inside(flow: torch.Tensor) -> torch.Tensor:
    """``B×1×H×W`` bool: the pixel moved by ``flow`` (B×2×H×W) is still inside the frame (``backward_warp``'s
    ``valid``, without sampling anything)."""
    return _inside(flow_warp_coords(flow))[:, None]
