"""The network's own dropout (training/model.py): what nn.Dropout computes, from a faster draw."""

from __future__ import annotations

import pytest
import torch

from training.model import MaskDropout, architecture_config, build_model


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_zeroes_about_p_and_scales_the_rest_by_one_over_one_minus_p(dtype):
    torch.manual_seed(0)
    values = torch.full((400, 500), 2.0, dtype=dtype)
    dropout = MaskDropout(0.3).train()

    out = dropout(values)

    kept = out != 0
    # 200,000 draws: the kept share is 0.7 within 4 standard deviations (0.001 each).
    assert kept.float().mean().item() == pytest.approx(0.7, abs=0.004)
    expected = torch.tensor(2.0 / 0.7, dtype=dtype).item()
    assert torch.all(out[kept] == torch.tensor(expected, dtype=dtype))
    assert out.dtype == dtype


def test_dropout_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(1)
    values = torch.randn(64, 32, requires_grad=True)
    dropout = MaskDropout(0.5).train()

    out = dropout(values)
    out.sum().backward()

    assert torch.equal(values.grad, (out != 0).float() * 2.0)


def test_dropout_is_the_identity_in_eval_mode_and_at_zero():
    values = torch.randn(8, 8)
    assert MaskDropout(0.4).eval()(values) is values
    assert MaskDropout(0.0).train()(values) is values


def test_the_same_seed_draws_the_same_masks_and_another_seed_other_ones():
    model = build_model(architecture_config(5, 16, 2, 0.5)).train()
    features = torch.randn(32, 5)

    def forward(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return model(features)

    assert torch.equal(forward(7), forward(7))
    assert not torch.equal(forward(7), forward(8))
    assert [type(layer).__name__ for layer in model.net][:3] == ["Linear", "ReLU", "MaskDropout"]
