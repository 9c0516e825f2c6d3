"""The natural-image benchmarks' class lists and reporting protocols.

Cityscapes' 19 evaluation classes in train-id order; for SYNTHIA -> Cityscapes the mean IoU is
reported over 16 classes (terrain, truck and train do not exist in SYNTHIA) and over 13 (wall,
fence and pole also left out), the paper's Table 1 layout: 13 per-class IoUs, mIoU13, mIoU16.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import MaskTwinsError
from .classes import ClassScores

CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                      "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
                      "truck", "bus", "train", "motorcycle", "bicycle")
CITYSCAPES_COLOURS = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156),
                      (190, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0),
                      (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0),
                      (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230),
                      (119, 11, 32))  # the Cityscapes palette, train-id order
SYNTHIA_16 = tuple(c for c in range(19) if c not in (9, 14, 16))  # no terrain, truck, train
SYNTHIA_13 = tuple(c for c in SYNTHIA_16 if c not in (3, 4, 5))  # ... nor wall, fence, pole
PROTOCOLS = ("synthia",)


def mean_over(iou: Sequence[float | None], classes: Sequence[int]) -> float | None:
    """The mean of the defined IoUs of ``classes`` (None when none is defined)."""
    defined = [iou[c] for c in classes if iou[c] is not None]
    return sum(defined) / len(defined) if defined else None


def check_protocol(protocol: str, num_classes: int) -> None:
    """A known protocol, for a prediction of its class count (MaskTwinsError otherwise)."""
    if protocol not in PROTOCOLS:
        raise MaskTwinsError(f"--protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if num_classes != len(CITYSCAPES_CLASSES):
        raise MaskTwinsError(f"--protocol {protocol}: scores the {len(CITYSCAPES_CLASSES)} "
                             f"Cityscapes classes; this prediction has {num_classes}")


def protocol_scores(scores: ClassScores, protocol: str) -> dict:
    """The figures a protocol reports: ``synthia``: mIoU over the 19, 16 and 13 classes and
    the IoU of each of the 13 classes by name (Table 1 of the SYNTHIA -> Cityscapes papers)."""
    check_protocol(protocol, scores.num_classes)
    return {"protocol": protocol,
            "miou19": mean_over(scores.iou, range(19)),
            "miou16": mean_over(scores.iou, SYNTHIA_16),
            "miou13": mean_over(scores.iou, SYNTHIA_13),
            "table": {CITYSCAPES_CLASSES[c]: scores.iou[c] for c in SYNTHIA_13}}
