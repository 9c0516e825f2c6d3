"""DAFormer's ImageNet feature distance on the thing classes."""

from __future__ import annotations

import pytest
import torch

from masktwins_cli.method.feature_distance import StageCapture, block_labels, feature_distance


def test_block_labels_take_the_majority_class_of_a_block_or_ignore_it():
    labels = torch.tensor([[[1, 1, 2, 3],
                            [1, 1, 2, 2],
                            [4, 4, 255, 255],
                            [4, 0, 255, 255]]])
    coarse = block_labels(labels, (2, 2), num_classes=5, min_ratio=0.75, ignore_label=255)
    assert coarse.tolist() == [[[1, 2], [4, 255]]]  # 2 covers 3/4; 4 covers 3/4; all ignored


def test_the_distance_is_the_mean_norm_over_the_thing_pixels():
    student, reference = torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2)
    student[0, :, 0, 0] = torch.tensor([3.0, 4.0])  # norm 5 at a thing pixel
    student[0, :, 1, 1] = torch.tensor([6.0, 8.0])  # norm 10 at a stuff pixel
    labels = torch.tensor([[[13, 13, 0, 0], [13, 13, 0, 0], [0, 0, 2, 2], [0, 0, 2, 2]]])
    labels[0, 0:2, 2:4] = 11  # a second thing block, distance 0
    assert feature_distance(student, reference, labels, 19) == pytest.approx(2.5)
    stuff_only = torch.zeros_like(labels)
    loss = feature_distance(student.requires_grad_(), reference, stuff_only, 19)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.count_nonzero(student.grad) == 0


def test_stage_capture_keeps_the_deepest_stage_after_the_inner_hook():
    capture = StageCapture(lambda stage, f: f + stage)
    outs = [capture(s, torch.zeros(1)) for s in range(4)]
    assert [float(o) for o in outs] == [0.0, 1.0, 2.0, 3.0]
    assert capture.stage == 3 and float(capture.features) == 3.0
