"""evals.encoder_bench: inputs of exact size, the bf16 path, and the quick report end to end.

No assertion here looks at wall-clock time: only that the numbers are there and sane.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from larsight.evals import encoder_bench as eb
from larsight.evals.encoder_bench_inputs import BATCH_SIZES, build_inputs, load_inputs, merged_event, save_inputs
from larsight.events import sim


def _unique(points: np.ndarray, size: float = 0.3) -> int:
    return len(np.unique(np.floor(points / size + 1e-3).astype(np.int64), axis=0))


def test_merged_event_has_exactly_n_distinct_voxels():
    stream = [(e.points, e.energy) for e in sim.simulate("mpr", 6, seed=3)]
    total_unique = _unique(np.concatenate([p for p, _ in stream]))
    n = min(5000, total_unique)
    p, e, used = merged_event(iter(stream), n)
    assert p.shape == (n, 3) and e.shape == (n,) and p.dtype == np.float32
    assert _unique(p) == n and 1 <= used <= len(stream)
    assert np.all(e > 0)
    # the smaller event's voxels are the first ones of the larger
    p_small, _, _ = merged_event(iter(stream), 1000)
    np.testing.assert_array_equal(p_small, p[:1000])
    # all voxels of every event merged: energy is conserved
    p_all, e_all, _ = merged_event(iter(stream), total_unique)
    assert e_all.sum() == pytest.approx(sum(float(x.sum()) for _, x in stream), rel=1e-4)
    with pytest.raises(ValueError, match="ran out"):
        merged_event(iter(stream), total_unique + 1)


def test_build_inputs_slots_and_sizes(tmp_path):
    inputs, info = build_inputs([200, 700], seed=5, slots=3)
    for n in (200, 700):
        assert len(inputs[n]) == 3
        assert all(_unique(p) == n for p, _ in inputs[n])
    assert not np.array_equal(inputs[200][0][0], inputs[200][1][0])   # distinct slots
    assert 0 < info["voxel_fraction_at_0p6cm"][200] <= 1
    save_inputs(inputs, tmp_path / "in.npz")
    back = load_inputs(tmp_path / "in.npz", 700)
    np.testing.assert_array_equal(back[2][0], inputs[700][2][0])


def test_measure_in_process_bf16_autocast(tmp_path):
    """The autocast path (what --bf16 runs on CUDA) works end to end, here on the CPU."""
    inputs, _ = build_inputs([150], seed=1, slots=2)
    save_inputs(inputs, tmp_path / "in.npz")
    threads = torch.get_num_threads()
    try:
        r = eb.measure(eb.Spec(preset="tiny", n_points=150, batch=2, inputs=str(tmp_path / "in.npz"),
                               dtype="bf16", threads=1, warmup=1, repeats=1, min_repeats=1))
    finally:
        torch.set_num_threads(threads)
    assert r["outputs_finite"] and r["points_per_batch"] == 300
    s = eb.summarize(r)
    assert s["repeats"] == 1 and s["fwd_ms_median"] > 0 and s["e2e_ms_median"] > 0


def _positive_finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_quick_benchmark_writes_a_sane_report(tmp_path):
    md = eb.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    assert md == tmp_path / "encoder_speed.md"
    text = md.read_text()
    assert "python -m larsight.evals.encoder_bench --quick --threads 1" in text
    assert "8.3 ms/event" in text and "Load average before" in text and "## Summary" in text

    data = json.loads((tmp_path / "encoder_speed" / "results.json").read_text())
    sizes = [int(s) for s in eb.QUICK["sizes"].split(",")]
    expected = {("tiny", n, b) for n in sizes for b in BATCH_SIZES}
    results = data["results"]
    assert {(r["spec"]["preset"], r["spec"]["n_points"], r["spec"]["batch"]) for r in results} \
        == expected and len(results) == len(expected)
    for r in results:
        assert "error" not in r, r.get("error")
        assert r["outputs_finite"]
        assert r["points_per_batch"] == r["spec"]["n_points"] * r["spec"]["batch"]
        assert r["parameters"] > 0 and r["repeats"] >= 1
        for k in ("fwd_ms_median", "fwd_ms_p90", "events_per_s", "e2e_ms_median", "e2e_ms_p90",
                  "mem_peak_mib"):
            assert _positive_finite(r[k]), (k, r[k])
        assert r["fwd_ms_p90"] >= r["fwd_ms_median"]
        assert math.isfinite(r["mem_delta_mib"]) and r["mem_delta_mib"] >= 0
        assert all(_positive_finite(t) for t in r["forward_s"] + r["end_to_end_s"])

    # one markdown row per configuration, every number in it positive and finite
    rows = [line for line in text.splitlines() if line.startswith("| tiny |")]
    assert len(rows) == len(expected)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1].endswith("M") and float(cells[1][:-1]) > 0
        numbers = [float(c) for c in cells[5:12]]                # times, rates, memory
        assert float(cells[12]) >= 0 and int(cells[13]) >= 1 and float(cells[15]) >= 0
        assert all(math.isfinite(v) and v >= 0 for v in numbers), row
        assert all(v > 0 for i, v in enumerate(numbers) if i != 5), row  # all but mem delta

    png = tmp_path / "encoder_speed" / "ms_per_event.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # --render re-writes the same table from results.json without measuring
    again = eb.main(["--render", str(tmp_path / "encoder_speed" / "results.json"),
                     "--out", str(tmp_path / "rendered")])
    assert [line for line in again.read_text().splitlines() if line.startswith("| tiny |")] == rows


@pytest.mark.gpu
def test_quick_benchmark_on_cuda_with_bf16(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    eb.main(["--quick", "--device", "cuda", "--bf16", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "encoder_speed" / "results.json").read_text())
    assert {r["spec"]["dtype"] for r in data["results"]} == {"fp32", "bf16"}
    for r in data["results"]:
        assert "error" not in r, r.get("error")
        assert r["outputs_finite"] and r["cuda_peak_mib"] > 0 and r["cuda_delta_mib"] >= 0
        assert _positive_finite(r["fwd_ms_median"])
