"""DAFormer's ImageNet feature distance (Hoyer et al., CVPR 2022): the student's deepest encoder
features on the source image stay close to those of the frozen ImageNet-pretrained encoder, on
the pixels of the "thing" classes, so that self-training does not forget what ImageNet taught
about objects.

L_FD = mean over the counted feature pixels of || F_student - F_ImageNet ||_2, where the source
labels are brought to the feature resolution by blocks (a block takes its majority class when
that class covers at least ``min_ratio`` of it, DAFormer's 0.75, else it counts nowhere) and a
pixel counts when its class is a thing class (Cityscapes: traffic light, traffic sign, person,
rider, car, truck, bus, train, motorcycle, bicycle). DAFormer weighs it by 0.005.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .adain import AdaINStyler

THING_CLASSES = (6, 7, 11, 12, 13, 14, 15, 16, 17, 18)


class StageCapture:
    """Stage hook that keeps the deepest stage's output (and applies an inner hook first, e.g.
    the AdaIN styler)."""

    def __init__(self, inner: AdaINStyler | None = None):
        self.inner, self.stage, self.features = inner, -1, None

    def __call__(self, stage: int, features: torch.Tensor) -> torch.Tensor:
        if self.inner is not None:
            features = self.inner(stage, features)
        if stage > self.stage:
            self.stage, self.features = stage, features
        return features


def block_labels(labels: torch.Tensor, size: Sequence[int], num_classes: int,
                 min_ratio: float = 0.75, ignore_label: int = 255) -> torch.Tensor:
    """(B, h, w) labels of (B, H, W) ``labels`` at the feature ``size`` (h, w): each block's
    majority class where it covers at least ``min_ratio`` of the block's pixels, else
    ``ignore_label`` (DAFormer's downscale_label_ratio). H and W must be multiples of h and w."""
    _, height, width = labels.shape
    fy, fx = height // size[0], width // size[1]
    valid = (labels >= 0) & (labels < num_classes)
    onehot = F.one_hot(torch.where(valid, labels, torch.zeros_like(labels)), num_classes)
    onehot = (onehot * valid[..., None]).permute(0, 3, 1, 2).float()  # (B, K, H, W)
    counts = F.avg_pool2d(onehot, (fy, fx))  # share of each class per block
    share, majority = counts.max(dim=1)
    return torch.where(share >= min_ratio, majority, torch.full_like(majority, ignore_label))


def feature_distance(student: torch.Tensor, reference: torch.Tensor, labels: torch.Tensor,
                     num_classes: int, classes: Sequence[int] = THING_CLASSES,
                     min_ratio: float = 0.75, ignore_label: int = 255) -> torch.Tensor:
    """L_FD (see the module notes): ``student`` and ``reference`` (B, C, h, w) features,
    ``labels`` (B, H, W) source classes. 0 (with a gradient of zeros) when no pixel counts."""
    per_pixel = torch.linalg.vector_norm(student.float() - reference.float(), dim=1)  # (B, h, w)
    coarse = block_labels(labels, per_pixel.shape[-2:], num_classes, min_ratio, ignore_label)
    counted = torch.isin(coarse, torch.as_tensor(list(classes), device=coarse.device))
    if not counted.any():
        return (per_pixel * 0).sum()
    return per_pixel[counted].mean()
