"""`benchmarks/quality.py`: its uncertainty scoring (against Gaussian closed forms) and the
selection of cached runs to re-score."""

import json
from statistics import NormalDist

import numpy as np
import pytest

from keras_cvdm import metrics

from .benchmark_module import load_benchmark

pytest.importorskip("scipy")

quality = load_benchmark("quality")


def test_calibrated_gaussian_errors_give_the_nominal_coverage():
    rng = np.random.default_rng(0)
    std = rng.uniform(0.1, 2.0, size=(8, 64, 64))
    truth = rng.normal(size=std.shape)
    estimate = truth + std * rng.standard_normal(std.shape)
    scores = quality.uncertainty_metrics(estimate, std, truth)
    # P(|Z| <= 2) for a standard normal.
    assert scores["coverage_2std"] == pytest.approx(2 * NormalDist().cdf(2) - 1, abs=0.005)
    np.testing.assert_allclose(scores["calibration"], metrics.CALIBRATION_LEVELS, atol=0.01)
    # Larger std, larger errors: rank correlation of std with |error| is clearly positive.
    assert scores["spearman"] > 0.3


@pytest.mark.filterwarnings("ignore:An input array is constant")
def test_overconfident_std_undercovers_and_uninformative_std_does_not_rank():
    rng = np.random.default_rng(1)
    truth = np.zeros((4, 64, 64))
    estimate = rng.normal(size=truth.shape)  # unit errors everywhere
    half = quality.uncertainty_metrics(estimate, np.full(truth.shape, 0.5), truth)
    # With std = 0.5 the ±2σ interval is ±1σ of the true errors.
    assert half["coverage_2std"] == pytest.approx(2 * NormalDist().cdf(1) - 1, abs=0.015)
    assert np.isnan(half["spearman"])  # a constant std ranks nothing
    noise = quality.uncertainty_metrics(estimate, rng.uniform(0.5, 1.5, truth.shape), truth)
    assert abs(noise["spearman"]) < 0.05


def test_only_re_runs_the_chosen_variants_scored_with_another_std(tmp_path, monkeypatch):
    monkeypatch.setattr(quality, "RUNS", str(tmp_path))
    specs = quality.specs_for("sr", [0, 1], 1, linear="beta_max=10", cosine="logsnr=-6..6")
    by_variant = {}
    for i, spec in enumerate(specs):
        by_variant.setdefault(spec["variant"], []).append(spec)
        if spec["variant"] == "cosine" and spec["seed"] == 1:
            continue  # not run yet: nothing to re-score
        result = {"spec": spec, **{f"test/{name}{steps}": {}
                                    for name, steps in quality.EXTRA_SAMPLERS}}
        if i % 2:
            result["std_ddof"] = metrics.UNCERTAINTY_DDOF  # already current
        with open(quality.run_path(spec, "cpu"), "w") as f:
            json.dump(result, f)
    redo = quality.stale_runs(specs, "cpu", {"learned", "linear", "cosine"})
    expected = {quality.run_name(s) for i, s in enumerate(specs)
                if s["variant"] in ("learned", "linear", "cosine") and not i % 2
                and not (s["variant"] == "cosine" and s["seed"] == 1)}
    assert redo == expected and redo
    assert all("alpha" not in name for name in redo)  # ablations only when asked
    assert quality.std_ddof({}) == 0
    # A current learned run that lacks one of the compared samplers is re-run too.
    current = next(s for i, s in enumerate(specs) if s["variant"] == "learned" and i % 2)
    with open(quality.run_path(current, "cpu")) as f:
        result = json.load(f)
    del result["test/{}{}".format(*quality.FAST_SAMPLER)]
    with open(quality.run_path(current, "cpu"), "w") as f:
        json.dump(result, f)
    redo = quality.stale_runs(specs, "cpu", {"learned", "linear", "cosine"})
    assert redo == expected | {quality.run_name(current)}
