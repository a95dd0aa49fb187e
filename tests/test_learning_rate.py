"""The softmax learning-rate schedules: the warm-up/cosine curve, and a scheduled run that ends by itself."""
import csv

import pytest

import constants
from ml import checkpoints, training
from ml.learning_rate import softmax_schedule, warmup_cosine


def test_the_rate_rises_to_the_peak_over_the_warm_up_then_falls_along_a_cosine_to_zero():
    total, peak, warmup = 1000, 0.003, 100
    rates = [warmup_cosine(step, total, peak, warmup) for step in range(total)]
    assert rates[0] == pytest.approx(peak / warmup) and rates[warmup - 1] == pytest.approx(peak)
    assert all(a < b for a, b in zip(rates[:warmup - 1], rates[1:warmup]))  # rising
    assert all(a >= b for a, b in zip(rates[warmup:-1], rates[warmup + 1:]))  # then falling
    assert rates[warmup + (total - warmup) // 2] == pytest.approx(peak / 2, rel=1e-2)
    assert 0 < rates[-1] < peak * 1e-4
    assert warmup_cosine(5, 3, peak, warmup) == pytest.approx(0.0)  # past the end it stays at 0
    short = [warmup_cosine(s, 20, peak, 500) for s in range(20)]  # the warm-up takes at most a tenth of the run
    assert short[1] == pytest.approx(peak) and short[-1] < peak / 100


def test_an_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="SOFTMAX_LR_SCHEDULE"):
        softmax_schedule(10, "linear")


def test_a_scheduled_run_follows_the_curve_stops_at_its_end_and_resumes_on_it(small_inputs, workdir, monkeypatch):
    monkeypatch.setattr(constants, "SOFTMAX_LR_SCHEDULE", "warmup_cosine")
    monkeypatch.setattr(constants, "SOFTMAX_SCHEDULE_EPOCHS", 3)
    monkeypatch.setattr(constants, "SOFTMAX_WARMUP_STEPS", 2)
    monkeypatch.setattr(constants, "CHECKPOINT_EVERY_EPOCHS", 1)
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    training.train_softmax(small_inputs, epochs=10, verbose=0)  # continues, and stops with epoch 3
    with open(checkpoints.RunFolder("softmax").history) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    rates = [float(r["learning_rate"]) for r in rows]
    steps = len(training.WindowBatches(small_inputs.train))
    expected = [warmup_cosine((e + 1) * steps - 1, 3 * steps, constants.SOFTMAX_PEAK_LEARNING_RATE, 2)
                for e in range(3)]
    assert rates == pytest.approx(expected, rel=1e-5) and rates[0] > rates[1] > rates[2]
    result = training.train_softmax(small_inputs, epochs=1, verbose=0)  # the schedule is over: nothing to do
    assert result["epoch"] == 3
