"""The classification report's metrics on hand-made predictions with known answers."""
import subprocess
import sys

import numpy as np
import pytest

from larsight.evals.classification_report import metrics, peak_rss_gb, truth_labels


def test_metrics_on_a_known_confusion():
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([[.8, .1, .1], [.2, .7, .1],      # nue right, nue called numu
                      [.1, .8, .1], [.1, .6, .3],      # numu right twice
                      [.1, .2, .7], [.5, .2, .3]])     # nc right, nc called nue
    m = metrics(y, probs)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["per_class"]["numu_cc"]["recall"] == pytest.approx(1.0)
    assert m["per_class"]["numu_cc"]["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert m["per_class"]["nue_cc"]["predicted_share"] == pytest.approx(2 / 6)
    # perfect ranking gives AUC 1, reversed probabilities give AUC 0
    onehot = np.eye(3)[y]
    assert metrics(y, onehot * 0.9 + 0.05)["auc"] == pytest.approx(1.0)
    assert metrics(y, (1 - onehot) / 2)["auc"] == pytest.approx(0.0)


def test_truth_labels_refuse_events_without_a_neutrino_class():
    from larsight.encoder.data import DataSpec, take

    nu = take(DataSpec(modes="nu", seed=5), "eval", 2, min_points=8)
    assert truth_labels(nu).shape == (2,)
    gun = take(DataSpec(modes="mpv", seed=5), "eval", 1, min_points=8)  # particle gun: no class
    with pytest.raises(ValueError, match="no neutrino class"):
        truth_labels(nu + gun)


def test_peak_memory_of_a_probe_is_its_own_not_its_parents():
    """A speed probe runs in a fresh process started by the big report process; its peak must be
    its own (ru_maxrss survives fork + exec and would report the parent's)."""
    big = np.ones(2**30 // 8)                # 1 GB resident in this, the parent, process
    parent = peak_rss_gb()
    assert parent > 1.0
    code = "from larsight.evals.classification_report import peak_rss_gb; print(peak_rss_gb())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    child = float(out.stdout.split()[-1])
    del big
    assert 0.01 < child < parent - 0.8, (child, parent)   # the child imports torch: ~0.55 GB
