"""The physics the reconstruction's particle identification and counting rely on
(tools.reconstruction: ``pida``, ``track_species``, the muon / pion choice, the fragment
thresholds), on synthetic dE/dx profiles and on simulated particle guns on the 0.6 cm grid the
agent's events use."""
from __future__ import annotations

import numpy as np
import pytest

from larsight.encoder.data import volume_for
from larsight.events import sim
from larsight.events.sim import medium as M
from larsight.tools import reconstruct
from larsight.tools.physics import MIP_DEDX, range_energy_mev
from larsight.tools.reconstruction import (MUON_MIN_CM, PIDA_PROTON, ParticleReco, _count_or_not, _muon_or_pions,
                                  pida, track_species)

GRID = volume_for(0.6)


def _profile(law, length_cm: float):
    """1 cm bins of residual range (bin centres) and dE/dx = law(R) along a stopping track."""
    rr = np.arange(length_cm - 0.5, 0.0, -1.0)
    return rr, law(rr)


def test_pida_of_the_proton_fit_and_of_a_mip():
    rr, dd = _profile(lambda r: 17.0 * r ** -0.42, 40.0)          # PHYSICS.md proton fit
    assert pida(rr, dd) == pytest.approx(17.0, rel=0.02)
    rr, dd = _profile(lambda r: 8.0 * r ** -0.37, 80.0)           # PHYSICS.md muon estimate
    assert pida(rr, dd) < PIDA_PROTON
    assert pida(np.array([0.5]), np.array([5.0])) is None         # one bin: no PIDA


@pytest.mark.parametrize("length", [5.0, 20.0, 60.0])
def test_track_species_from_the_csda_tables(length):
    """A stopping proton deposits its range energy with a steep Bragg rise: 'proton'; a
    minimum-ionising track of the same length (flat 1 MIP): 'mip'; and the decision does not
    depend on which end the profile was measured from."""
    e_p = range_energy_mev("proton", length)
    rr, dd = _profile(lambda r: 17.0 * r ** -0.42, length)
    dd = dd * e_p / dd.sum()                                        # deposit = CSDA energy
    sp, info = track_species(rr, dd, length, e_p)
    assert sp == "proton" and info["proton_range_agreement"] == pytest.approx(1.0, rel=1e-6)
    sp_flipped, _ = track_species(length - rr, dd, length, e_p)
    assert sp_flipped == "proton"
    flat = np.full(len(rr), MIP_DEDX)
    sp, info = track_species(rr, flat, length, float(flat.sum()))
    assert sp == "mip" and info["median_dedx"] == pytest.approx(MIP_DEDX)


def _track(pid: str, length: float, k: int, dep: float = 50.0) -> ParticleReco:
    return ParticleReco(id=k, interaction=0, kind="track", pid=pid, pid_scores={}, n_points=int(length / 0.6) + 5,
                        start_cm=(0.0, 0.0, 0.0), end_cm=(0.0, 0.0, length), direction=(0.0, 0.0, 1.0),
                        angle_to_beam_deg=0.0, length_cm=length, path_length_cm=length,
                        deposited_energy_mev=dep, kinetic_energy_mev=dep, energy_method="calorimetry")


def _shower(pid: str, dep: float, k: int) -> ParticleReco:
    return ParticleReco(id=k, interaction=0, kind="shower", pid=pid, pid_scores={}, n_points=50,
                        start_cm=(0.0, 0.0, 0.0), end_cm=(0.0, 0.0, 30.0), direction=(0.0, 0.0, 1.0),
                        angle_to_beam_deg=0.0, length_cm=30.0, deposited_energy_mev=dep,
                        kinetic_energy_mev=dep / 0.82, energy_method="calorimetry")


def test_muon_is_the_longest_mip_track_unless_an_electron_is_there():
    parts = [_track("muon", 120.0, 0), _track("muon", 30.0, 1), _track("muon", 5.0, 2)]
    _muon_or_pions(parts, {0, 1, 2})
    assert [p.pid for p in parts] == ["muon", "pion", "pion"]
    for p in parts:
        _count_or_not(p)
    assert [p.visible for p in parts] == [True, True, False]      # a 5 cm MIP piece is not counted
    assert parts[2].not_counted
    short = [_track("muon", MUON_MIN_CM - 5.0, 0)]
    _muon_or_pions(short, {0})
    assert short[0].pid == "pion"                                  # too short to be called the muon
    with_e = [_track("muon", 120.0, 0), _shower("electron", 400.0, 1)]
    _muon_or_pions(with_e, {0, 1})
    assert with_e[0].pid == "pion"                                 # one charged lepton per interaction
    small = _shower("photon", 15.0, 3)
    _count_or_not(small)
    assert not small.visible                                       # a 15 MeV shower piece


def test_contained_muon_gun_is_a_muon_with_its_range_energy():
    ev = sim.particle_gun(13, 300.0, seed=2, direction=(0.1, 0.2, 1.0), position=(115.0, 100.0, 40.0),
                          volume=GRID)
    truth = ev.particles[0]
    reco = reconstruct(ev)
    mu = max((p for p in reco.particles if p.kind == "track"), key=lambda p: p.length_cm)
    assert mu.pid == "muon" and mu.stops
    assert mu.energy_method == "range"
    assert mu.kinetic_energy_mev == pytest.approx(truth.kinetic_energy_mev, rel=0.1)
    assert reco.main.counts["muon"] == 1 and reco.main.counts["proton"] == 0


@pytest.mark.parametrize("ke", [120.0, 250.0])
def test_proton_gun_is_a_proton_with_its_range_energy(ke):
    ev = sim.particle_gun(2212, ke, seed=3, direction=(0.3, -0.2, 1.0), position=(100.0, 120.0, 60.0),
                          volume=GRID, hadronic=False)
    reco = reconstruct(ev)
    p = max((q for q in reco.particles if q.kind == "track"), key=lambda q: q.deposited_energy_mev)
    assert p.pid == "proton" and p.pid_method == "dE/dx"
    assert p.kinetic_energy_mev == pytest.approx(ke, rel=0.15)
    assert reco.main.counts["proton"] == 1 and reco.main.counts["muon"] == 0
    assert p.range_energy_mev == pytest.approx(float(M.range_table("proton").energy_mev(p.path_length_cm)), rel=1e-3)
