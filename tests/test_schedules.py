import pytest

from inversion_core import ScheduleConfig, layer_learning_rates
from inversion_core.schedules import sweep_position


def peak_layer(step, total=100, layers=5, **kw):
    rates = layer_learning_rates(step, total, layers, ScheduleConfig(warmup=0, **kw))
    return max(range(layers), key=rates.__getitem__)


def test_coarse_to_fine_peak_sweeps_shallow_to_deep():
    peaks = [peak_layer(step) for step in range(0, 100, 10)]
    assert peaks[0] == 0 and peaks[-1] == 4
    assert peaks == sorted(peaks)


def test_peak_rate_is_lr_max_and_far_layers_hit_the_floor():
    config = ScheduleConfig(lr=0.01, sigma=0.5, floor=0.05, warmup=0)
    rates = layer_learning_rates(0, 100, 6, config)
    assert rates[0] == pytest.approx(0.01)
    assert rates[-1] == pytest.approx(0.01 * 0.05)


def test_sweep_ends_on_last_layer_at_sweep_end():
    assert sweep_position(60, 101, 5, 0.6) == pytest.approx(4.0)
    assert sweep_position(30, 101, 5, 0.6) == pytest.approx(2.0)


def test_flat_schedule_is_constant_after_warmup():
    config = ScheduleConfig(kind="flat", lr=0.002, warmup=0.1)
    assert layer_learning_rates(50, 100, 4, config) == [0.002] * 4
    assert layer_learning_rates(0, 100, 4, config)[0] == pytest.approx(0.0002)


def test_bad_schedule_values_are_reported_together():
    with pytest.raises(ValueError, match=r"kind must be one of.*lr must be in"):
        ScheduleConfig(kind="cosine", lr=0)
