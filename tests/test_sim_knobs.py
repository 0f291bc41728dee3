"""Simulator knobs (events/sim/knobs.py): defaults reproduce the simulator bit for bit, every
knob validates its input and changes the events the way its physics says, the values are
recorded per event, the CLI and the generated documentation."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from larsight.events import formats, sim
from larsight.events.sim import generators as G
from larsight.events.sim import knobs as K

ROOT = Path(__file__).resolve().parents[1]
ARRAYS = ("points", "energy", "semantic", "particle", "fragment", "interaction", "pid",
          "n_electrons", "dx_cm")

# sha1 of the per-point arrays of simulate(mode, 3, seed=11) and of particle_gun(13, 800, seed=4),
# computed with the simulator as it was BEFORE the knobs existed (commit d7f4449).
REFERENCE = {
    "nu": ["c1f9d291819dc3ba7c86ce591e639dcad17c32f3", "4fd489b48d602da2691bf187c17071e281da082d",
           "8feb735160345b518da7bbb8544c114bb5f021ef"],
    "mpv": ["d6510af3b68ee7903f0d72ca424610027bb94958", "dd3113c9123d60a9029305bf8a20f0ac5fe02b24",
            "7a6f90dd25424cd1e3f51ed7f65ebc664438acee"],
    "mpr": ["20d1b174570ca37e9d45282d793ac816f0cd61e1", "97af380d2848d342b1353976efcac142623f1ee2",
            "9ad2667fad5e5782a075619379d32ddee330ac05"],
}
REFERENCE_GUN = "2fe936f5a41a4d48907fcbff451adda4b5174059"


def _sha1(ev) -> str:
    h = hashlib.sha1()
    for name in ARRAYS:
        h.update(np.ascontiguousarray(getattr(ev, name)).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- defaults: today's simulator
@pytest.mark.parametrize("mode", sorted(REFERENCE))
def test_defaults_are_bit_for_bit_the_simulator_without_knobs(mode):
    plain = [_sha1(ev) for ev in sim.simulate(mode, 3, seed=11)]
    assert plain == REFERENCE[mode]
    explicit = list(sim.simulate(mode, 3, seed=11, knobs={}))   # defaults, recorded
    assert [_sha1(ev) for ev in explicit] == REFERENCE[mode]
    assert explicit[0].meta.sim_knobs == K.Knobs().as_dict()
    assert next(iter(sim.simulate(mode, 1, seed=11))).meta.sim_knobs is None


def test_gun_defaults_bit_for_bit():
    assert _sha1(sim.particle_gun(13, 800.0, seed=4)) == REFERENCE_GUN
    assert _sha1(sim.particle_gun(13, 800.0, seed=4, knobs={})) == REFERENCE_GUN


# ---------------------------------------------------------------- the knob table
def test_knobs_dataclass_matches_specs():
    fields = K.Knobs().as_dict()
    assert tuple(fields) == K.NAMES
    for s in K.SPECS:
        assert fields[s.name] == s.default, s.name
        if s.sampling == "choice":
            assert s.default in s.choices
        else:
            assert s.lo <= s.default <= s.hi and s.lo < s.hi, s.name
            assert s.why and s.sampling in ("uniform", "log-uniform")


def test_sample_knobs_in_range_fixed_kept_and_varied():
    rng = np.random.default_rng(0)
    draws = [K.sample_knobs(rng, {"energy_scale": 1.05}) for _ in range(200)]
    for s in K.SPECS:
        vals = [getattr(k, s.name) for k in draws]
        if s.name == "energy_scale":
            assert set(vals) == {1.05}
        elif s.sampling == "choice":
            assert set(vals) == set(s.choices), s.name       # every choice drawn in 200
        else:
            assert min(vals) >= s.lo and max(vals) <= s.hi, s.name
            assert np.std(vals) > 0.1 * (s.hi - s.lo), s.name


def test_bad_knobs_give_clear_errors():
    with pytest.raises(K.KnobError, match=r"unknown knob 'energy'.*valid knobs: .*energy_scale"):
        K.check_knobs({"energy": 1.0})
    with pytest.raises(K.KnobError, match=r"energy_scale=1.3 is outside its range \[0.9, 1.1\]"):
        K.check_knobs({"energy_scale": 1.3})
    with pytest.raises(K.KnobError, match=r"recombination_model='lin' is not one of"):
        K.check_knobs({"recombination_model": "lin"})
    with pytest.raises(K.KnobError, match="not a number"):
        K.check_knobs({"dead_fraction": "lots"})
    with pytest.raises(ValueError, match="outside its range"):   # at the call, before any event
        sim.simulate("nu", 2, knobs={"dead_fraction": 0.5})
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        K.parse_setting("energy_scale")
    assert K.parse_setting("voxel_size_cm=0.6") == ("voxel_size_cm", 0.6)


def test_randomized_events_reproducible_one_by_one_and_recorded(tmp_path):
    evs = list(sim.simulate("mpr", 4, seed=2, randomize=True, knobs={"charge_noise": 0.05}))
    again = next(iter(sim.simulate("mpr", 1, seed=2, start=2, randomize=True,
                                   knobs={"charge_noise": 0.05})))
    assert _sha1(again) == _sha1(evs[2]) and again.meta.sim_knobs == evs[2].meta.sim_knobs
    scales = {ev.meta.sim_knobs["energy_scale"] for ev in evs}
    assert len(scales) == 4 and all(ev.meta.sim_knobs["charge_noise"] == 0.05 for ev in evs)
    path = tmp_path / "r.h5"
    formats.write(path, evs)
    back = list(formats.read(path))
    assert [b.meta.sim_knobs for b in back] == [e.meta.sim_knobs for e in evs]


# ---------------------------------------------------------------- each knob changes the events
def _mpv(knobs, n=3, seed=5):
    return list(sim.simulate("mpv", n, seed=seed, knobs=knobs))


def test_energy_scale_threshold_dead_noise_and_noisy_voxels():
    base = _mpv({})
    e0 = sum(float(ev.energy.sum()) for ev in base)
    e1 = sum(float(ev.energy.sum()) for ev in _mpv({"energy_scale": 1.1}))
    assert e1 / e0 == pytest.approx(1.1, abs=0.01)
    n0 = sum(len(ev) for ev in base)
    dead = _mpv({"dead_fraction": 0.05})
    assert 0.9 * n0 < sum(len(ev) for ev in dead) < 0.98 * n0
    thr = _mpv({"threshold_mev": 0.2})
    assert sum(len(ev) for ev in thr) < 0.95 * n0 and min(float(ev.energy.min()) for ev in thr) >= 0.2
    noisy = _mpv({"noisy_rate": 0.02})
    fake = sum(int((ev.particle == -1).sum()) for ev in noisy)
    assert 0.01 * n0 < fake < 0.03 * n0
    assert all(np.all(ev.semantic[ev.particle == -1] == 4) for ev in noisy)
    smeared = _mpv({"charge_noise": 0.1})
    for a, b in zip(smeared, base):               # same voxels (threshold aside), 10 % noise
        ka, kb = (np.round(ev.points / 0.3).astype(np.int64) @ [768 * 768, 768, 1] for ev in (a, b))
        _, ia, ib = np.intersect1d(ka, kb, return_indices=True)
        assert ia.size > 0.97 * len(b)
        assert 0.07 < np.std(a.energy[ia] / b.energy[ib] - 1) < 0.13


def test_recombination_knobs_change_the_charge_only():
    base = _mpv({}, n=1)[0]
    birks = _mpv({"recombination_model": "birks"}, n=1)[0]
    strong = _mpv({"box_beta": 0.25}, n=1)[0]
    assert np.array_equal(base.energy, birks.energy)
    assert not np.allclose(base.n_electrons, birks.n_electrons)
    # box: a MIP keeps 0.705 of its charge at beta 0.212, 0.691 at 0.25 (PHYSICS.md formula)
    assert 0.96 < strong.n_electrons.sum() / base.n_electrons.sum() < 0.99


def _gun_mean(pdg, T, knobs, stat, n):
    return float(np.mean([stat(sim.particle_gun(pdg, T, seed=s, direction=(0, 0, 1), knobs=knobs))
                          for s in range(n)]))


def _gap(ev):
    p = ev.particles[0]
    return float(np.linalg.norm(np.subtract(p.end_cm, p.start_cm)))


def _depth(ev):
    return float(np.average(ev.points[:, 2] - ev.particles[0].start_cm[2], weights=ev.energy))


def _width(ev):
    rel = ev.points[:, :2].astype(float) - np.asarray(ev.particles[0].start_cm[:2])
    return float(np.average(np.hypot(rel[:, 0], rel[:, 1]), weights=ev.energy))


def test_shower_knobs():
    short = _gun_mean(22, 400.0, {"conversion_length_scale": 0.85}, _gap, 20)
    long_ = _gun_mean(22, 400.0, {"conversion_length_scale": 1.15}, _gap, 20)
    assert long_ / short == pytest.approx(1.15 / 0.85, rel=0.02)
    assert (_gun_mean(11, 1000.0, {"shower_depth_scale": 1.15}, _depth, 8)
            > _gun_mean(11, 1000.0, {"shower_depth_scale": 0.85}, _depth, 8) + 3.0)
    assert (_gun_mean(11, 1000.0, {"moliere_scale": 1.15}, _width, 8)
            > 1.12 * _gun_mean(11, 1000.0, {"moliere_scale": 0.85}, _width, 8))



def test_shower_fluctuation_knobs():
    """Each shower draws log-normal depth and width factors of the knob's sigma around the
    scale knobs (none drawn by default); the factors act through the scales tested above."""
    from larsight.events.model import PILARNET_VOLUME
    from larsight.events.sim.transport import Builder, SimOptions

    def factors(k):
        b = Builder(np.random.default_rng(0), PILARNET_VOLUME, SimOptions().with_knobs(K.knobs_from(k)))
        return np.log(np.array([b._shower_scales() for _ in range(2000)]))
    assert np.all(factors({}) == 0.0)
    f = factors({"shower_depth_fluct": 0.2, "lateral_fluct": 0.1, "moliere_scale": 1.1})
    assert np.std(f[:, 0]) == pytest.approx(0.2, rel=0.08) and abs(np.mean(f[:, 0])) < 0.02
    assert np.std(f[:, 1]) == pytest.approx(0.1, rel=0.08)
    assert np.mean(f[:, 1]) == pytest.approx(np.log(1.1), abs=0.01)
    plain = _sha1(sim.particle_gun(22, 500.0, seed=1))
    assert _sha1(sim.particle_gun(22, 500.0, seed=1, knobs={"lateral_fluct": 0.2})) != plain


def test_track_knobs_delta_cut_hadronic_length_michel():
    def n_delta(cut):
        return sum(sum(p.process == "delta" for p in sim.particle_gun(13, 1000.0, seed=s,
                                                                       knobs={"delta_cut_mev": cut}).particles)
                   for s in range(6))
    assert n_delta(0.5) > 1.5 * n_delta(1.0) > 2 * n_delta(3.0)
    assert (_gun_mean(2212, 400.0, {"hadron_interaction_scale": 1.25}, _gap, 15)
            > _gun_mean(2212, 400.0, {"hadron_interaction_scale": 0.8}, _gap, 15) + 4.0)

    def michel_T(knobs):
        out = []
        for s in range(10):
            ev = sim.particle_gun(-13, 150.0, seed=s, knobs=knobs)
            out += [p.kinetic_energy_mev for p in ev.particles if p.process == "decay" and p.pdg == -11]
        return np.array(out)
    plain, smeared = michel_T({}), michel_T({"michel_smear": 0.1})
    assert plain.size == smeared.size == 10            # mu+ always decays at rest
    ratio = smeared / plain
    assert np.all((ratio > 0.5) & (ratio < 1.6)) and 0.03 < np.std(ratio) < 0.2


def test_neutrino_generator_knobs():
    def shares(k, n=3000):
        rng = np.random.default_rng(1)
        chans = [G._channel(rng, 2000.0, k) for _ in range(n)]
        return {c: chans.count(c) / n for c in ("QE", "MEC", "RES", "DIS", "COH")}
    base = shares(K.Knobs())
    dis = shares(K.knobs_from({"nu_dis_weight": 1.4, "nu_qe_weight": 0.7}))
    assert dis["DIS"] > base["DIS"] + 0.08 and dis["QE"] + dis["MEC"] < base["QE"] + base["MEC"] - 0.05
    assert base["COH"] == 0 and 0.015 < shares(K.knobs_from({"nu_coh_fraction": 0.03}))["COH"] < 0.045
    coh = None
    for i in range(150):                    # the first COH event of a fixed stream simulates
        ev = sim.neutrino(seed=3, index=i, knobs={"nu_coh_fraction": 0.03})
        if ev.interactions[0].channel == "COH":
            coh = ev
            break
    assert coh is not None and not any(abs(p.pdg) in (2212, 2112) for p in coh.particles if p.parent < 0)
    rem = [sum(p.process == "nuclear" for p in sim.neutrino(seed=1, index=i, knobs=k).particles)
           for k in ({}, {"remnant_protons": 1.5}) for i in range(6)]
    assert sum(rem[:6]) == 0 and 4 <= sum(rem[6:]) <= 18


def test_coarse_grid_knob():
    ev = next(iter(sim.simulate("mpv", 1, seed=5, knobs={"voxel_size_cm": 0.6})))
    assert ev.meta.volume.voxel_size_cm == 0.6 and ev.meta.volume.shape == (384, 384, 384)
    idx = ev.points / 0.6
    assert np.allclose(idx, np.round(idx), atol=1e-3)
    assert len(ev) < 0.5 * len(_mpv({}, n=1)[0])


# ---------------------------------------------------------------- docs and CLI
def test_docs_table_is_generated_from_the_code():
    doc = (ROOT / "docs" / "simulator_knobs.md").read_text(encoding="utf-8")
    assert doc == K.render_markdown(), "regenerate: python -m larsight.events.sim.knobs"
    for s in K.SPECS:
        assert f"| `{s.name}` |" in doc


def test_cli_simulate_knobs(tmp_path, capsys):
    from larsight.ui.cli import main
    assert main(["simulate", "--list-knobs"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in K.NAMES)
    bad = main(["simulate", "--knob", "nope=1", "--out", str(tmp_path / "a.h5")])
    err = capsys.readouterr().err
    assert bad == 2 and "unknown knob 'nope'" in err and len(err.strip().splitlines()) == 1
    assert main(["simulate", "--knob", "energy_scale=2", "--out", str(tmp_path / "a.h5")]) == 2
    assert "outside its range" in capsys.readouterr().err and not (tmp_path / "a.h5").exists()
    out_file = tmp_path / "r.h5"
    assert main(["simulate", "--mode", "mpv", "--n", "2", "--workers", "1", "--randomize",
                 "--knob", "dead_fraction=0.02", "--out", str(out_file)]) == 0
    evs = list(formats.read(out_file))
    assert [e.meta.sim_knobs["dead_fraction"] for e in evs] == [0.02, 0.02]
    assert evs[0].meta.sim_knobs["energy_scale"] != evs[1].meta.sim_knobs["energy_scale"]


def test_real_event_comparison_section(tmp_path):
    from larsight.evals import simulator_real as R
    real = R.real_event()
    if real is None:
        pytest.skip("shared/data/pilarnet_m_test_event_7675.npz not present")
    sizes = R.particle_sizes(real)
    assert sorted(sizes["shower"]) == [7, 9, 555]          # the event's README: one e shower, 2 small
    lines = R.section(2, 1, tmp_path)
    text = "\n".join(lines)
    row = next(line for line in lines if line.startswith("| real PILArNet-M |"))
    assert "0.411 / 0.508 / 0.000 / 0.000 / 0.081" in row   # 571 / 706 / 0 / 0 / 113 of 1390
    assert "| mpr randomised | 2 |" in text and "| nu default | 2 |" in text
    assert "instance -1, PID none: 100%" in text
    assert (tmp_path / "real_comparison.png").stat().st_size > 10_000


def test_pilarnet_le_convention_option():
    from larsight.events.sim.transport import SimOptions
    plain = sim.mpv(seed=5, index=0)
    pil = sim.mpv(seed=5, index=0, options=SimOptions(le_without_particle=True))
    le = plain.semantic == 4
    assert le.sum() > 10 and np.all(plain.particle[le] >= 0)
    assert np.all(pil.particle[le] == -1) and np.all(pil.pid[le] == -1)
    assert np.array_equal(pil.particle[~le], plain.particle[~le])
    assert np.array_equal(pil.energy, plain.energy) and np.array_equal(pil.semantic, plain.semantic)
