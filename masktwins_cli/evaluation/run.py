"""``masktwins evaluate``: score a probability volume against a label volume."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import MaskTwinsError
from ..io.layout import spatial_shape
from ..io.volumes import open_volume
from ..scoring.classes import DEFAULT_IGNORE
from ..scoring.metrics import SegmentationScores, score_volume
from .class_overlays import write_class_overlays
from .classes_run import ClassEvaluation, evaluate_classes, holds_classes
from .overlays import write_overlays
from .scores_file import write_scores_json


@dataclass(frozen=True)
class EvaluationResult:
    """Scores plus where the overlays went."""

    prediction: str
    ground_truth: str
    scores: SegmentationScores
    overlays: list[Path]

    def as_dict(self) -> dict:
        return {"prediction": self.prediction, "ground_truth": self.ground_truth,
                **self.scores.as_dict(), "overlays": [str(p) for p in self.overlays]}


def _foreground(labels: np.ndarray, uri: str, foreground_class: int) -> np.ndarray:
    """The 0/1 foreground mask of a truth slice; truth values must be the classes 0
    (background) and ``foreground_class`` (bool counts as 0/1): anything else (another class,
    a negative or fractional value, NaN) is an error naming the file, never a silent 0."""
    if labels.dtype == np.bool_:
        return labels.astype(np.uint8)
    values = np.unique(labels)
    allowed = np.isin(values, (0, foreground_class))
    if labels.dtype.kind not in "biuf" or not allowed.all():
        shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values[~allowed][:6]) \
            if labels.dtype.kind in "biuf" else str(labels.dtype)
        raise MaskTwinsError(f"{uri}: truth label values {shown} are outside the classes 0 "
                             f"(background) and {foreground_class} (foreground)")
    return (labels == foreground_class).astype(np.uint8)


def evaluate(prediction: str, ground_truth: str, threshold: float = 0.5, mode: str = "per_slice",
             overlay_dir: str | Path | None = None, raw: str | None = None,
             foreground_class: int = 1, json_out: str | Path | None = None,
             num_classes: int | None = None, ignore: int | None = DEFAULT_IGNORE,
             classes: Sequence[int] | None = None,
             protocol: str | None = None,
             upsample: bool = False) -> EvaluationResult | ClassEvaluation:
    """Per-slice or whole-volume IoU, F1, MCC and AP, read slice by slice (see
    :mod:`masktwins_cli.scoring.metrics` for what volume mode holds).

    ``prediction``: foreground probabilities in [0, 1], (z, y, x) or (y, x).
    ``ground_truth``: class labels of the same shape; ``foreground_class`` is the positive class.
    ``json_out``: also write the result there (see :func:`.scores_file.write_scores_json`).

    A K-class prediction (see :func:`.classes_run.holds_classes`) is scored by
    :func:`.classes_run.evaluate_classes` (``num_classes``, ``ignore``, ``classes``,
    ``protocol``) instead.
    """
    prob = open_volume(prediction, ndim=(2, 3, 4))
    truth = open_volume(ground_truth, ndim=(2, 3))
    if holds_classes(prob, truth.ndim, num_classes):
        image = None if overlay_dir is None else overlay_image(raw, truth)
        result = evaluate_classes(prediction, ground_truth, num_classes, ignore, classes,
                                  None if image is not None else json_out, protocol, upsample)
        if image is None:
            return result
        views = (image, prob, truth) if truth.ndim == 3 else \
            (image.read_all()[..., None, :, :], prob.read_all()[..., None, :, :], truth.read_all()[None])
        result = replace(result, overlays=tuple(write_class_overlays(
            *views, Path(overlay_dir), result.scores.num_classes, ignore)))
        if json_out is not None:
            write_scores_json(json_out, result.as_dict())
        return result
    if classes is not None or num_classes is not None or protocol is not None or upsample:
        raise MaskTwinsError(f"--classes / --num-classes / --protocol / --upsample are for class "
                             f"maps and class probabilities; {prediction} is one foreground "
                             "probability")
    if prob.ndim == 4:
        raise MaskTwinsError(f"'{prediction}': expected a (y, x) or (z, y, x) volume, got shape "
                             f"{tuple(prob.shape)}")
    if tuple(prob.shape) != tuple(truth.shape):
        raise MaskTwinsError(f"{prediction}: shape {tuple(prob.shape)} differs from the ground truth "
                             f"{ground_truth} {tuple(truth.shape)}")
    if overlay_dir is not None and raw is None:
        raise MaskTwinsError("--overlay needs --raw: the image volume to draw the overlays on")
    try:
        # slice by slice: memory holds a slice (volume mode: also the foreground's scores)
        scores = score_volume(_ZyxView(prob), _ForegroundView(truth, foreground_class, ground_truth),
                              threshold, mode)
    except MaskTwinsError as err:
        message = str(err)
        raise MaskTwinsError(message if prediction in message or ground_truth in message
                             else f"{prediction}: {message}") from None
    overlays: list[Path] = []
    if overlay_dir is not None:
        image = open_volume(raw, ndim=(2, 3))
        if tuple(image.shape) != tuple(prob.shape):
            raise MaskTwinsError(f"{raw}: shape {tuple(image.shape)} differs from the prediction "
                                 f"{tuple(prob.shape)}")
        overlays = write_overlays(_ZyxView(image), _ZyxView(prob), _ForegroundView(truth, foreground_class),
                                  Path(overlay_dir), threshold)
    result = EvaluationResult(prediction, ground_truth, scores, overlays)
    if json_out is not None:
        write_scores_json(json_out, result.as_dict())
    return result


def overlay_image(raw: str | None, truth) -> object:
    """The image volume of ``--raw`` for overlays of a K-class prediction: grey or
    channel-first, with the truth's spatial shape."""
    if raw is None:
        raise MaskTwinsError("--overlay needs --raw: the image volume to draw the overlays on")
    image = open_volume(raw, ndim=(2, 3, 4))
    if spatial_shape(image.shape) != tuple(truth.shape):
        raise MaskTwinsError(f"{raw}: shape {tuple(image.shape)} does not fit the ground truth "
                             f"{tuple(truth.shape)} (images are (z, y, x) or (c, z, y, x))")
    return image


class _ZyxView:
    """Slice-wise (z, y, x) view of a volume that may be 2-D."""

    def __init__(self, volume):
        self.volume = volume
        self.shape = (1, *volume.shape) if len(volume.shape) == 2 else tuple(volume.shape)
        self.ndim = 3

    def __getitem__(self, z):
        if len(self.volume.shape) == 2:
            return np.asarray(self.volume[:, :])
        return np.asarray(self.volume[z])


class _ForegroundView(_ZyxView):
    """Slice-wise 0/1 foreground of a truth volume (values checked, see :func:`_foreground`)."""

    def __init__(self, volume, foreground_class: int, uri: str = ""):
        super().__init__(volume)
        self.foreground_class, self.uri = foreground_class, uri or volume.uri

    def __getitem__(self, z):
        return _foreground(super().__getitem__(z), self.uri, self.foreground_class)
