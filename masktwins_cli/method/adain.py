"""AdaIN: re-style source feature maps with the target's per-channel statistics.

During training, in the shallow encoder stages, each source feature map is instance-normalised
with its own per-sample, per-channel mean and standard deviation and then scaled and shifted to a
target sample's (statistics detached), as in AdaSyn's synapse network that MaskTwins builds on.
Inference uses the plain path.
"""

from __future__ import annotations

import torch

EPS = 1e-6


def channel_statistics(features: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and std over the spatial axes.

    features (B, C, *spatial) -> mean, std each (B, C, 1, ..., 1); std = sqrt(var + eps).
    """
    dims = tuple(range(2, features.ndim))
    var, mean = torch.var_mean(features.float(), dim=dims, keepdim=True, unbiased=False)
    return mean, torch.sqrt(var + eps)


def adain(features: torch.Tensor, target_mean: torch.Tensor, target_std: torch.Tensor,
          eps: float = EPS) -> torch.Tensor:
    """Source features (B, C, *spatial) given the target statistics (B_t, C, 1, ...).

    Source sample i takes the statistics of target sample i mod B_t. The target statistics are
    detached: AdaIN steers the source features, it does not train the target path.
    """
    batch = features.shape[0]
    index = torch.arange(batch, device=features.device) % target_mean.shape[0]
    mean, std = channel_statistics(features, eps)
    normalised = (features.float() - mean) / std
    styled = normalised * target_std.detach()[index] + target_mean.detach()[index]
    return styled.to(features.dtype)


class StatisticsRecorder:
    """Stage hook that records detached statistics of the first ``num_stages`` stages."""

    def __init__(self, num_stages: int):
        self.num_stages = num_stages
        self.statistics: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, stage: int, features: torch.Tensor) -> torch.Tensor:
        if stage < self.num_stages:
            mean, std = channel_statistics(features.detach())
            self.statistics[stage] = (mean, std)
        return features


class AdaINStyler:
    """Stage hook that applies :func:`adain` with recorded target statistics."""

    def __init__(self, statistics: dict[int, tuple[torch.Tensor, torch.Tensor]]):
        self.statistics = statistics

    def __call__(self, stage: int, features: torch.Tensor) -> torch.Tensor:
        if stage in self.statistics:
            mean, std = self.statistics[stage]
            return adain(features, mean, std)
        return features
