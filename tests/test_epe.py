"""One EPE definition (``metrics.endpoint_error``): the evaluation metric on NumPy H×W×2 maps and the training
objective on torch …×2×H×W tensors give the same number for the same motion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scattermotion.metrics import endpoint_error, flow_metrics
from scattermotion.training.objectives import end_point_error


def test_training_epe_is_the_evaluation_epe():
    rng = np.random.default_rng(0)
    pred, gt = rng.normal(0, 3, (2, 3, 8, 10, 2)).astype(np.float32)  # 3 maps of 8×10
    metric = np.mean([flow_metrics(p, g)["epe"] for p, g in zip(pred, gt, strict=True)])
    as_tensors = [torch.from_numpy(a).permute(0, 3, 1, 2)[None] for a in (pred, gt)]  # 1×3×2×H×W
    assert float(end_point_error(*as_tensors)) == pytest.approx(metric, rel=1e-5)
    u, v = (pred[0] - gt[0]).transpose(2, 0, 1)
    np.testing.assert_allclose(endpoint_error(pred[0], gt[0]), np.hypot(u, v), rtol=1e-6)


def test_torch_epe_has_a_finite_gradient_at_zero_error():
    pred = torch.zeros(1, 2, 4, 4, requires_grad=True)
    end_point_error(pred, torch.zeros(1, 2, 4, 4)).backward()
    assert torch.isfinite(pred.grad).all()
    with pytest.raises(ValueError, match="axis -1"):
        endpoint_error(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)))
