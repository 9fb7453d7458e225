"""The `keras-cvdm demo` command on the built-in qpi preset (small, fast settings)."""

import json

import numpy as np
import pytest

from keras_cvdm import cli
from keras_cvdm.data import qpi_test_set
from keras_cvdm.physics import phase_mae, tie_phase, tune_tie_regularization


def _run(tmp_path, *extra):
    cli.main(["demo", "--output", str(tmp_path), "--num-images", "2", "--image-size", "32",
              "--samples", "2", *extra])


def test_demo_reports_each_image_and_refuses_to_overwrite(tmp_path, capsys):
    pytest.importorskip("scipy")
    _run(tmp_path)
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "qpi_demo_metrics.json").read_text())
    rows = metrics["per_image"]
    assert len(rows) == 2
    assert np.mean([r["cvdm_mae_rad"] for r in rows]) == pytest.approx(
        metrics["cvdm_mae_rad_mean_aligned"])
    # The TIE column is the tuned baseline recomputed independently on the same images.
    i_minus, i_plus, phase, kinds = qpi_test_set(2, 32, 0.05, return_kinds=True)
    eps, _ = tune_tie_regularization(i_minus, i_plus, phase)
    tie = phase_mae(tie_phase(i_minus, i_plus, regularization=eps), phase)
    np.testing.assert_allclose([r["tie_tuned_mae_rad"] for r in rows], tie, rtol=1e-5)
    assert [r["kind"] for r in rows] == [str(k) for k in kinds]
    assert "held-out evaluation" in out and "on 64 images" in out
    # A second run must not replace what the first wrote unless asked.
    before = (tmp_path / "qpi_demo_metrics.json").read_text()
    with pytest.raises(SystemExit, match="--overwrite"):
        _run(tmp_path)
    assert (tmp_path / "qpi_demo_metrics.json").read_text() == before
