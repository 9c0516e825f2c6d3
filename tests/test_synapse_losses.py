"""Synapse (sigmoid) method core: AdaSyn's rebalanced BCE, per-channel pseudo-labels, the twin
BCE and L_cm on sigmoid probabilities, on tiny tensors with values worked out by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from masktwins_cli.method.losses import (
    consistency_loss,
    rebalance_weights,
    twin_weighted_bce,
    weighted_bce,
)
from masktwins_cli.method.pseudo_labels import sigmoid_pseudo_labels

LN2 = math.log(2.0)


def t(values) -> torch.Tensor:
    """A (B, C, x) float tensor from nested lists."""
    return torch.tensor(values, dtype=torch.float32)


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def test_rarer_foreground_gets_ratio_weight():
    # r = 1/4: foreground weight (1 - r) / r = 3, background 1
    assert rebalance_weights(t([[[1, 0, 0, 0]]])).tolist() == [[[3, 1, 1, 1]]]


def test_rarer_background_gets_ratio_weight():
    # r = 3/4: background weight r / (1 - r) = 3, foreground 1
    assert rebalance_weights(t([[[1, 1, 1, 0]]])).tolist() == [[[1, 1, 1, 3]]]


def test_ratio_is_clipped_and_balanced_or_empty_channels_weigh_one():
    sparse = torch.zeros(1, 1, 100)
    sparse[0, 0, 7] = 1  # r = 0.01, clipped to 0.05: weight 0.95 / 0.05 = 19
    weights = rebalance_weights(sparse)
    assert weights[0, 0, 7].item() == pytest.approx(19.0)
    assert torch.all(weights[0, 0, :7] == 1) and torch.all(weights[0, 0, 8:] == 1)
    # channel 0 empty (r = 0, no voxel takes the foreground weight), channel 1 balanced
    assert rebalance_weights(t([[[0, 0, 0, 0], [1, 1, 0, 0]]])).tolist() == [[[1] * 4, [1] * 4]]


def test_weights_are_per_channel_over_the_whole_batch():
    # channel 0: one foreground of 4 voxels over the batch (r = 1/4); channel 1: 3 of 4
    targets = t([[[1, 0], [1, 1]], [[0, 0], [0, 1]]])
    weights = rebalance_weights(targets)
    assert weights.tolist() == [[[3, 1], [1, 1]], [[1, 1], [3, 1]]]


def test_ratio_counts_only_valid_voxels():
    # over the valid voxels r = 1/2: all weights 1
    assert rebalance_weights(t([[[1, 0, 0, 0]]]), t([[[1, 1, 0, 0]]])).tolist() == [[[1, 1, 1, 1]]]


def test_weighted_bce_hand_values():
    zeros = torch.zeros(1, 1, 4)
    target = t([[[1, 0, 0, 0]]])
    # logits 0: BCE = ln 2 everywhere; weights 3, 1, 1, 1 -> mean 6/4 ln 2
    assert weighted_bce(zeros, target).item() == pytest.approx(1.5 * LN2)
    assert weighted_bce(zeros, target, rebalance=False).item() == pytest.approx(LN2)
    # two ignored voxels: r = 1/2 over the valid ones, (ln 2 + ln 2 + 0 + 0) / 4
    assert weighted_bce(zeros, target, t([[[1, 1, 0, 0]]])).item() == pytest.approx(0.5 * LN2)
    # logits 2 (target 1) and -1 (target 0), balanced: mean of ln(1 + e^-2), ln(1 + e^-1)
    expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))) / 2
    assert weighted_bce(t([[[2, -1]]]), t([[[1, 0]]])).item() == pytest.approx(expected, rel=1e-6)


def test_weighted_bce_matches_adasyn_form():
    # AdaSyn: F.binary_cross_entropy(sigmoid(logits), target, weight=w), mean reduction
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 2, 5, 6, generator=generator)
    targets = (torch.rand(2, 2, 5, 6, generator=generator) < 0.2).float()
    expected = F.binary_cross_entropy(torch.sigmoid(logits), targets, weight=rebalance_weights(targets))
    assert weighted_bce(logits, targets).item() == pytest.approx(expected.item(), rel=1e-5)


def test_weighted_bce_has_gradients():
    logits = torch.zeros(1, 2, 3, requires_grad=True)
    weighted_bce(logits, t([[[1, 0, 0], [0, 1, 1]]])).backward()
    assert logits.grad is not None and torch.all(torch.isfinite(logits.grad))


def test_sigmoid_pseudo_labels_per_channel_thresholds():
    pre = [0.8, 0.76, 0.5, 0.24, 0.1]    # delta_pre = 0.75: 1, 1, ignored, 0, 0
    post = [0.7, 0.6, 0.34, 0.3, 0.64]   # delta_post = 0.65: 1, ignored, 0, 0, ignored
    logits = t([[[logit(p) for p in pre], [logit(p) for p in post]]])
    labels, valid, fractions = sigmoid_pseudo_labels(logits, (0.75, 0.65))
    assert labels.tolist() == [[[1, 1, 0, 0, 0], [1, 0, 0, 0, 0]]]
    assert valid.tolist() == [[[1, 1, 0, 1, 1], [1, 0, 1, 1, 0]]]
    assert fractions.tolist() == pytest.approx([0.8, 0.6])


def test_threshold_one_half_labels_every_voxel():
    labels, valid, fractions = sigmoid_pseudo_labels(t([[[0.0, -1.0, 2.0]]]), (0.5,))
    assert labels.tolist() == [[[1, 0, 1]]] and valid.tolist() == [[[1, 1, 1]]]
    assert fractions.tolist() == [1.0]


def test_twin_bce_mixes_views_by_lambda():
    targets, valid = t([[[1, 0]]]), t([[[1, 1]]])
    first, second = torch.zeros(1, 1, 2), t([[[2, -1]]])
    a, b = weighted_bce(first, targets, valid), weighted_bce(second, targets, valid)
    mixed = twin_weighted_bce([first, second], targets, valid, lambda_cl=0.25)
    assert mixed.item() == pytest.approx(0.25 * a.item() + 0.75 * b.item())
    assert a.item() == pytest.approx(LN2)


def test_consistency_on_sigmoid_probabilities():
    # probabilities 0.5 and 0.75 everywhere: squared difference 1/16
    views = [torch.zeros(1, 2, 3), torch.full((1, 2, 3), math.log(3.0))]
    assert consistency_loss(views, "probabilities", "sigmoid").item() == pytest.approx(0.0625)
    assert consistency_loss(views, "logits", "sigmoid").item() == pytest.approx(math.log(3.0) ** 2)


def test_class_balanced_sigmoid_pseudo_labels_keep_each_label_s_most_confident_share():
    from masktwins_cli.method.pseudo_labels import sigmoid_pseudo_labels

    p = torch.tensor([0.01, 0.1, 0.3, 0.4, 0.9, 0.6])
    logits = torch.logit(torch.stack([p, p.flip(0)]))[None]  # (1, 2, 6): two channels
    labels, valid, fractions = sigmoid_pseudo_labels(logits, (0.75, 0.65), keep=0.5)
    assert labels[0, 0].tolist() == [0, 0, 0, 0, 1, 1]
    # channel 0: negatives 0.01, 0.1 kept (most confident half of 4); positive 0.9 of 2
    assert valid[0, 0].tolist() == [1, 1, 0, 0, 1, 0]
    assert valid[0, 1].tolist() == [0, 1, 0, 0, 1, 1]
    assert fractions.tolist() == pytest.approx([0.5, 0.5])
    _, thresholded, _ = sigmoid_pseudo_labels(logits, (0.75, 0.65))
    assert thresholded[0, 0].tolist() == [1, 1, 0, 0, 1, 0]


def test_synapse_objective_logs_positive_pseudo_labels_per_million():
    """pseudo_<channel>_ppm = positives among the valid voxels x 1e6, per channel."""
    from types import SimpleNamespace

    from masktwins_cli.training.step import objective_for

    method = SimpleNamespace(bce_weighting="rebalance", confidence="threshold",
                             class_balanced_keep=0.5, synapse_thresholds=(0.75, 0.65),
                             lambda_cl=0.5, synapse_pseudo_labels="voxels")
    probs = torch.full((1, 2, 10, 10, 10), 0.1)
    probs[0, 0, 0, 0, :4] = 0.9      # 4 pre positives
    probs[0, 0, 1, 0, :5] = 0.5      # 5 ignored (between 0.25 and 0.75)
    probs[0, 1, 0, 0, :2] = 0.7      # 2 post positives (>= 0.65)
    _, valid, extra = objective_for("synapse", method).pseudo(torch.logit(probs))
    assert extra["pseudo_pre_ppm"].item() == pytest.approx(1e6 * 4 / 995)
    assert extra["pseudo_post_ppm"].item() == pytest.approx(1e6 * 2 / 1000)
    assert extra["confident_pre"].item() == pytest.approx(995 / 1000)


def test_cube_pseudo_labels_turn_each_detection_into_one_cube():
    """A blob above delta becomes one cube at its peak, the rest of the blob is ignored; a peak
    below delta gives no positive; a cube at the border is clipped; channels are independent."""
    from masktwins_cli.method.pseudo_labels import cube_pseudo_labels

    probs = torch.full((1, 2, 16, 16, 16), 0.05)
    probs[0, 0, 3:10, 3:10, 3:10] = 0.8     # a 7^3 blob above delta_pre = 0.75 ...
    probs[0, 0, 6, 6, 6] = 0.95             # ... peaking at (6, 6, 6)
    probs[0, 0, 14, 14, 14] = 0.6           # an uncertain peak: ignored, not positive
    probs[0, 1, 0, 0, 0] = 0.9              # a post peak in the corner
    labels, valid, fractions = cube_pseudo_labels(torch.logit(probs), (0.75, 0.65), cube_size=3)
    pre, post = labels[0, 0], labels[0, 1]
    expected = torch.zeros(16, 16, 16)
    expected[5:8, 5:8, 5:8] = 1
    assert torch.equal(pre, expected)
    corner = torch.zeros(16, 16, 16)
    corner[0:2, 0:2, 0:2] = 1
    assert torch.equal(post, corner)
    blob = torch.zeros(16, 16, 16, dtype=torch.bool)
    blob[3:10, 3:10, 3:10] = True
    assert not valid[0, 0][blob & (expected == 0)].any()      # the blob's shoulders: ignored
    assert valid[0, 0][expected == 1].all()
    assert valid[0, 0, 14, 14, 14] == 0 and labels[0, 0, 14, 14, 14] == 0
    assert valid[0, 0, 0, 15, 0] == 1 and labels[0, 0, 0, 15, 0] == 0  # background: negative
    assert fractions[0].item() == pytest.approx((16 ** 3 - (7 ** 3 - 27) - 1) / 16 ** 3)


def test_cube_pseudo_labels_keep_separate_detections_and_need_a_threshold_recipe(tmp_path):
    from masktwins_cli.config.recipe import recipe_from_dict
    from masktwins_cli.errors import MaskTwinsError
    from masktwins_cli.method.pseudo_labels import cube_pseudo_labels

    probs = torch.full((1, 2, 8, 8, 24), 0.05)
    probs[0, 0, 4, 4, 4] = 0.9
    probs[0, 0, 4, 4, 16] = 0.8
    labels, _, _ = cube_pseudo_labels(torch.logit(probs), (0.75, 0.65), cube_size=3)
    assert labels[0, 0].sum() == 54 and labels[0, 1].sum() == 0
    with pytest.raises(MaskTwinsError, match="method.synapse_pseudo_labels"):
        recipe_from_dict({
            "data": {"source_raw": "s.zarr/raw", "source_points": "p.csv", "target_raw": "t.zarr/raw",
                     "patch_size": [32, 32, 32]},
            "model": {"task": "synapse", "name": "resunet", "spatial_dims": 3},
            "method": {"block_size": [6, 6, 6], "synapse_pseudo_labels": "cubes",
                       "confidence": "class_balanced"}})
