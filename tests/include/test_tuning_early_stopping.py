"""SageMaker's early-stopping rule as the local tuning job applies it."""

from __future__ import annotations

import optuna
import pytest

from include.tuning_early_stopping import (
    SageMakerEarlyStopping,
    worse_than_median_of_running_averages,
)

# Three earlier trials: their running averages up to step 1 are 0.7, 0.6 and 0.9 (the last one
# ended after step 0), so the median is 0.7. Step 2 of the first one is past step 1: not counted.
EARLIER = [{0: 0.6, 1: 0.8, 2: 0.85}, {0: 0.5, 1: 0.7}, {0: 0.9}]


@pytest.mark.parametrize(("value", "worse"), [(0.69, True), (0.7, False), (0.71, False)])
def test_a_value_is_judged_against_the_median_of_running_averages(value, worse):
    assert worse_than_median_of_running_averages(value, 1, EARLIER, maximize=True) is worse


def test_a_minimized_objective_is_worse_above_the_median():
    losses = [{0: 0.6, 1: 0.4}, {0: 0.5, 1: 0.5}, {0: 0.3, 1: 0.3}]  # averages 0.5, 0.5, 0.3
    assert worse_than_median_of_running_averages(0.51, 1, losses, maximize=False)
    assert not worse_than_median_of_running_averages(0.49, 1, losses, maximize=False)


def test_nothing_to_compare_with_is_never_worse():
    assert not worse_than_median_of_running_averages(0.1, 3, [], maximize=True)
    # An earlier trial that reported nothing up to this step does not count.
    assert not worse_than_median_of_running_averages(0.1, 0, [{1: 0.9}, {}], maximize=True)


def test_the_pruner_counts_earlier_trials_still_running_and_skips_the_warmup():
    study = optuna.create_study(direction="maximize", pruner=SageMakerEarlyStopping(warmup_steps=1))
    first = study.ask()  # still running: its reports count all the same
    for step, value in enumerate([0.8, 0.8, 0.8]):
        first.report(value, step)
    slow = study.ask()
    slow.report(0.5, 0)
    assert not slow.should_prune()  # the first epoch is not judged
    slow.report(0.79, 1)
    assert slow.should_prune()
    # A later trial does not judge an earlier one.
    later = study.ask()
    later.report(0.1, 0)
    later.report(0.1, 1)
    first.report(0.75, 3)  # below its own running average of 0.7875, but it is the first trial
    assert not first.should_prune()
