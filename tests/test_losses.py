"""Loss terms on tiny tensors against hand-computed values."""

import math

import pytest
import torch

from masktwins_cli.method.losses import (
    consistency_loss,
    supervised_loss,
    twin_cross_entropy,
    view_weights,
    weighted_cross_entropy,
)
from masktwins_cli.method.pseudo_labels import pseudo_labels


def logits_for(p1):
    """2-class logits whose softmax gives foreground probability p1 (shape (1, 2, n))."""
    p1 = torch.tensor(p1)
    return torch.stack([torch.log(1 - p1), torch.log(p1)])[None]


def test_supervised_cross_entropy_hand_value():
    logits = logits_for([0.8, 0.3])
    labels = torch.tensor([[1, 0]])
    expected = -(math.log(0.8) + math.log(0.7)) / 2
    assert supervised_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    weighted = supervised_loss(logits, labels, torch.tensor([1.0, 3.0]))
    assert weighted.item() == pytest.approx(
        (3 * -math.log(0.8) + 1 * -math.log(0.7)) / 4, rel=1e-6)


def test_weighted_ce_ignores_zero_weight_and_averages_over_all():
    logits = logits_for([0.8, 0.3])
    labels = torch.tensor([[1, 1]])
    weights = torch.tensor([[1.0, 0.0]])
    assert weighted_cross_entropy(logits, labels, weights).item() == pytest.approx(
        -math.log(0.8) / 2, rel=1e-6)


def test_twin_cross_entropy_mixes_views_with_lambda():
    a, b = logits_for([0.8, 0.3]), logits_for([0.6, 0.5])
    labels = torch.tensor([[1, 0]])
    w = torch.ones(1, 2)
    ce_a = -(math.log(0.8) + math.log(0.7)) / 2
    ce_b = -(math.log(0.6) + math.log(0.5)) / 2
    assert twin_cross_entropy([a, b], labels, w, 0.25).item() == pytest.approx(
        0.25 * ce_a + 0.75 * ce_b, rel=1e-6)
    assert view_weights(4, 0.3) == [0.25] * 4
    assert view_weights(1, 0.3) == [1.0]


def test_consistency_mse_on_logits_and_probabilities():
    a = torch.tensor([[[1.0, 2.0], [0.0, 0.0]]])  # (1, 2, 2)
    b = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])
    assert consistency_loss([a, b]).item() == pytest.approx((1 + 4 + 0 + 1) / 4)
    pa, pb = torch.softmax(a, 1), torch.softmax(b, 1)
    assert consistency_loss([a, b], "probabilities").item() == pytest.approx(
        ((pa - pb) ** 2).mean().item())
    c = torch.zeros_like(a)
    three = consistency_loss([a, b, c]).item()
    pairs = [((a - b) ** 2).mean(), ((a - c) ** 2).mean(), ((b - c) ** 2).mean()]
    assert three == pytest.approx(sum(p.item() for p in pairs) / 3)
    assert consistency_loss([a]).item() == 0.0


def test_consistency_gradient_reaches_both_views():
    a = torch.randn(1, 2, 3, requires_grad=True)
    b = torch.randn(1, 2, 3, requires_grad=True)
    consistency_loss([a, b]).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_pseudo_labels_threshold_and_quality():
    logits = logits_for([0.9, 0.6, 0.2, 0.99])
    labels, weights, fraction = pseudo_labels(logits, "threshold", 0.7, 0.968)
    assert labels.tolist() == [[1, 1, 0, 1]]
    assert weights.tolist() == [[1.0, 0.0, 1.0, 1.0]]  # 0.6 -> top prob 0.6 < 0.7
    assert fraction.item() == pytest.approx(0.75)
    labels, weights, quality = pseudo_labels(logits, "quality", 0.7, 0.968)
    assert quality.item() == pytest.approx(0.25)  # only 0.99 is above tau
    assert torch.allclose(weights, torch.full((1, 4), 0.25))


def test_pseudo_foreground_is_the_weighted_share_of_foreground_labels():
    from masktwins_cli.training.step import pseudo_foreground

    labels = torch.tensor([[0, 1, 1, 2]])
    weights = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    assert pseudo_foreground(labels, weights).item() == pytest.approx(2 / 3)
    assert pseudo_foreground(labels, torch.zeros_like(weights)).item() == 0.0


def test_mean_top_probability_is_the_mean_of_each_pixels_largest_class_probability():
    from masktwins_cli.training.step import mean_top_probability

    # pixel 0: equal logits (0.5), pixel 1: p(class 1) = sigmoid(log 3) = 0.75
    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)]]])  # (N=1, C=2, W=2)
    assert mean_top_probability(logits).item() == pytest.approx((0.5 + 0.75) / 2)
    assert mean_top_probability(torch.full((2, 3, 4, 4), 7.0)).item() == pytest.approx(1 / 3)


def test_class_balanced_pseudo_labels_keep_the_most_confident_share_of_each_class():
    # 8 voxels: 6 predicted background (confidence 0.99 ... 0.74), 2 foreground (0.9, 0.6)
    p_fg = torch.tensor([0.01, 0.02, 0.05, 0.1, 0.2, 0.26, 0.9, 0.6])
    logits = torch.log(torch.stack([1 - p_fg, p_fg]))[None]  # (1, 2, 8)
    labels, weights, kept = pseudo_labels(logits, "class_balanced", 0.7, 0.968, keep=0.5)
    assert labels.tolist() == [[0, 0, 0, 0, 0, 0, 1, 1]]
    # background: the 3 most confident of 6; foreground: the more confident of 2
    assert weights.tolist() == [[1, 1, 1, 0, 0, 0, 1, 0]] and kept.item() == pytest.approx(0.5)
    # a global delta = 0.7 would keep every background voxel and only one foreground one
    _, global_weights, _ = pseudo_labels(logits, "threshold", 0.7, 0.968)
    assert global_weights.tolist() == [[1, 1, 1, 1, 1, 1, 1, 0]]
    _, all_kept, _ = pseudo_labels(logits, "class_balanced", 0.7, 0.968, keep=1.0)
    assert all_kept.min().item() == 1.0
    _, one_each, _ = pseudo_labels(logits, "class_balanced", 0.7, 0.968, keep=0.01)
    assert one_each.tolist() == [[1, 0, 0, 0, 0, 0, 1, 0]]  # at least one voxel per class
