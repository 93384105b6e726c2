"""Gradient × input against finite differences and a numpy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch  # noqa: E402

from varscore.analysis.attribution import gradient_x_input, standardised_attribution


def centre_bin(prediction):
    return prediction[:, prediction.shape[1] // 2, 0:1]


class TinyConvNet(torch.nn.Module):
    """(B, L, 4) -> (B, bins, 1): conv, softplus, average pooling into bins."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv1d(4, 3, kernel_size=5, padding=2)
        self.head = torch.nn.Linear(3, 1)

    def forward(self, x):
        h = torch.nn.functional.softplus(self.conv(x.transpose(1, 2)))  # (B, 3, L)
        h = torch.nn.functional.avg_pool1d(h, 8).transpose(1, 2)  # (B, bins, 3)
        return self.head(h)


def one_hot(rng, n, length):
    return np.eye(4)[rng.integers(0, 4, size=(n, length))]


def finite_difference_gradient(module, x, reduce, eps=1e-6):
    grad = np.zeros_like(x)
    with torch.no_grad():
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                for c in range(4):
                    up, down = x[i : i + 1].copy(), x[i : i + 1].copy()
                    up[0, j, c] += eps
                    down[0, j, c] -= eps
                    f_up = reduce(module(torch.tensor(up))).item()
                    f_down = reduce(module(torch.tensor(down))).item()
                    grad[i, j, c] = (f_up - f_down) / (2 * eps)
    return grad


def test_gradient_x_input_matches_finite_differences():
    module = TinyConvNet().double()
    x = one_hot(np.random.default_rng(0), 2, 32)
    got = gradient_x_input(module, x, centre_bin, batch_size=1)
    want = finite_difference_gradient(module, x, centre_bin) * x
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_gradient_x_input_of_a_linear_model_is_weights_times_input():
    weights = np.random.default_rng(1).normal(size=(16, 4))

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(weights))

        def forward(self, x):
            return (x * self.w).sum(dim=(1, 2))[:, None, None]

    x = one_hot(np.random.default_rng(2), 3, 16) * 0.5  # dosage-like input
    got = gradient_x_input(Linear(), x, lambda p: p[:, 0, :])
    np.testing.assert_allclose(got, weights[None] * x, rtol=1e-12)


@pytest.mark.slow
def test_tiny_enformer_gradient_matches_finite_differences():
    """The real backbone path: a tiny Enformer in float64, a few positions checked."""
    from varscore_plugins.enformer import EnformerBackbone, tiny_params
    from varscore_plugins.outputs import ScalarOutput

    backbone = EnformerBackbone(**tiny_params(window_size=512)).build()
    module = backbone.torch_module().double()
    reduce = ScalarOutput(center_bins=1).reduce
    x = one_hot(np.random.default_rng(3), 1, 512)
    got = gradient_x_input(module, x, reduce)
    with torch.no_grad():
        base = x.copy()
        for pos in (3, 256, 511):
            hot = int(base[0, pos].argmax())
            for c in (hot, (hot + 1) % 4):  # gradient × input is zero off the present base
                up, down = base.copy(), base.copy()
                up[0, pos, c] += 1e-6
                down[0, pos, c] -= 1e-6
                fd = (reduce(module(torch.tensor(up))).item() - reduce(module(torch.tensor(down))).item()) / 2e-6
                assert got[0, pos, c] == pytest.approx(fd * x[0, pos, c], rel=1e-4, abs=1e-8)


def test_standardised_attribution_is_abs_max_zscore():
    a = np.random.default_rng(4).normal(size=(50, 4))
    m = np.abs(a).max(axis=1)
    np.testing.assert_allclose(standardised_attribution(a), (m - m.mean()) / m.std())
    assert not standardised_attribution(np.ones((10, 4))).any()
