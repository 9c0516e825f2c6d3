"""EMA teacher (parameters and buffers) and AdaIN statistics."""

import pytest
import torch
from torch import nn

from masktwins_cli.method.adain import AdaINStyler, StatisticsRecorder, adain, channel_statistics
from masktwins_cli.method.teacher import ema_alpha_at, make_teacher, update_ema


def test_alpha_warm_up_rule():
    assert ema_alpha_at(0, 0.999) == 0.0
    assert ema_alpha_at(1, 0.999) == pytest.approx(0.5)
    assert ema_alpha_at(9, 0.999) == pytest.approx(0.9)
    assert ema_alpha_at(100000, 0.999) == 0.999


def test_ema_updates_parameters_and_buffers():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    teacher = make_teacher(student)
    assert not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    student.train()(torch.randn(8, 3))  # moves the BN running statistics
    old_t = {k: v.clone() for k, v in teacher.state_dict().items()}
    s = student.state_dict()
    update_ema(teacher, student, 0.9)
    for key, value in teacher.state_dict().items():
        if value.dtype.is_floating_point:
            assert torch.allclose(value, 0.9 * old_t[key] + 0.1 * s[key]), key
        else:
            assert torch.equal(value, s[key]), key  # num_batches_tracked is copied
    assert not torch.equal(teacher[1].running_mean, old_t["1.running_mean"])


def test_adain_output_has_target_statistics():
    torch.manual_seed(1)
    source = torch.randn(2, 3, 8, 8) * 4 + 2
    target = torch.randn(2, 3, 8, 8) * 0.5 - 1
    t_mean, t_std = channel_statistics(target)
    styled = adain(source, t_mean, t_std)
    mean, std = channel_statistics(styled)
    assert torch.allclose(mean, t_mean, atol=1e-4)
    assert torch.allclose(std, t_std, atol=1e-3)


def test_adain_pairs_source_with_target_modulo_batch():
    source = torch.randn(3, 2, 4, 4, 4)
    target = torch.randn(1, 2, 4, 4, 4) * 3 + 5
    t_mean, t_std = channel_statistics(target)
    mean, _ = channel_statistics(adain(source, t_mean, t_std))
    assert torch.allclose(mean, t_mean.expand(3, -1, -1, -1, -1), atol=1e-4)


def test_hooks_record_then_restyle_shallow_stages_only():
    recorder = StatisticsRecorder(2)
    features = [torch.randn(1, 2, 4, 4) * (i + 1) for i in range(3)]
    for i, f in enumerate(features):
        assert recorder(i, f) is f
    assert set(recorder.statistics) == {0, 1}
    styler = AdaINStyler(recorder.statistics)
    src = torch.randn(1, 2, 4, 4)
    assert torch.allclose(channel_statistics(styler(1, src))[1], recorder.statistics[1][1], atol=1e-3)
    assert styler(2, src) is src
