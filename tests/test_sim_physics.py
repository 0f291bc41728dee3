"""Physics checks of the simulator against shared/PHYSICS.md (each can fail on a wrong model)."""
import numpy as np
import pytest

from larsight.events import Volume
from larsight.events import sim
from larsight.events.sim import medium as M
from larsight.events.sim.samplers import longitudinal_params, sample_michel_x

# PHYSICS.md CSDA range table (cm): T -> (muon, pion, kaon, proton)
RANGE_TABLE = {
    100: (30.4, 26.9, 12.5, 7.82),
    200: (76.1, 70.6, 39.5, 26.0),
    500: (217, 212, 156, 116),
    1000: (441, 442, 387, 319),
    5000: (2024, 2071, 2203, 2165),
}
SPECIES = (13, 211, 321, 2212)
MICHEL_ENDPOINT = 52.83   # MeV, PHYSICS.md (not read from the code under test)

# A long thin volume so that 1 GeV tracks (4.4 m) stop inside; the gun starts on a voxel edge.
LONG = Volume(voxel_size_cm=0.3, shape=(16, 16, 1600), origin_cm=(-2.4, -2.4, -0.3))
BARE = dict(mcs=False, hadronic=False, delta_rays=False, decays=False, fluctuations=False)


@pytest.mark.parametrize("T", sorted(RANGE_TABLE))
@pytest.mark.parametrize("k", range(4))
def test_range_table_matches_physics_md(T, k):
    pdg = SPECIES[k]
    expected = RANGE_TABLE[T][k]
    got = float(M.csda_range_cm(pdg, T))
    assert got == pytest.approx(expected, rel=0.05), (pdg, T, got, expected)


def test_low_energy_proton_range():
    assert float(M.csda_range_cm(2212, 10.0)) == pytest.approx(0.135, rel=0.05)
    # and the fit R = 2.34e-3 T^1.76 at 50 MeV
    assert float(M.csda_range_cm(2212, 50.0)) == pytest.approx(2.34e-3 * 50**1.76, rel=0.08)


def test_mip_stopping_power():
    S = M.range_table("muon").stopping_power(np.linspace(150, 600, 200))
    assert S.min() == pytest.approx(M.MIP_DEDX, rel=0.02)


@pytest.mark.parametrize("pdg", [13, 211, 2212])
@pytest.mark.parametrize("T", [100, 500, 1000])
def test_simulated_track_length_is_csda_range(pdg, T):
    """The simulated straight track (MCS and interactions off) stops at the tabulated range."""
    ev = sim.particle_gun(pdg, T, seed=1, direction=[0, 0, 1], position=[0.0, 0.0, 0.0],
                          volume=LONG, **BARE)
    mine = ev.fragment == 0
    length = float(ev.points[mine, 2].max()) + 0.15          # centre of the last voxel
    table = RANGE_TABLE[T][SPECIES.index(pdg)]
    assert length == pytest.approx(table, rel=0.05), (pdg, T, length, table)
    # all the kinetic energy is deposited (no fluctuations, no secondaries)
    assert ev.energy[mine].sum() == pytest.approx(T, rel=0.01)


def test_stopping_muon_path_length_with_scattering():
    """With multiple scattering on, the path length (sum of steps) is still the CSDA range and
    the straight start-end distance is shorter."""
    T = 300.0
    R = float(M.csda_range_cm(13, T))
    ev = sim.particle_gun(13, T, seed=4, direction=[0, 0, 1], position=[115.0, 115.0, 5.0],
                          delta_rays=False, decays=False)
    mu = ev.particles[0]
    assert ev.dx_cm[ev.fragment == 0].sum() == pytest.approx(R, rel=0.03)
    straight = np.linalg.norm(np.subtract(mu.end_cm, mu.start_cm))
    assert 0.85 * R < straight < R
    assert ev.energy.sum() == pytest.approx(T, rel=0.1)


def test_bragg_peak_of_a_stopping_proton():
    """dE/dx rises towards the stopping point, roughly as 17 R^-0.42 (PHYSICS.md)."""
    ev = sim.particle_gun(2212, 200.0, seed=2, direction=[0, 0, 1], position=[0.0, 0.0, 0.0],
                          volume=LONG, **BARE)
    z = ev.points[:, 2] + 0.15
    end = z.max()
    res = end - z + 0.15                                      # residual range of each voxel
    dedx = ev.energy / 0.3
    bins = [(0, 1.0), (1.0, 3.0), (3.0, 8.0), (8.0, 20.0)]
    means = [dedx[(res >= a) & (res < b)].mean() for a, b in bins]
    assert all(m1 > m2 for m1, m2 in zip(means, means[1:])), means
    assert means[0] > 3 * means[-1]
    fit = 17 * 5.0 ** -0.42                                   # at 5 cm residual range
    assert means[2] == pytest.approx(fit, rel=0.25)


def test_michel_spectrum():
    """Shape of the sampler, and the endpoint and mean of simulated Michel electrons."""
    x = sample_michel_x(np.random.default_rng(0), 200_000)
    h, edges = np.histogram(x, bins=10, range=(0, 1))
    cdf = edges**3 * (2 - edges)
    assert np.allclose(h, np.diff(cdf) * x.size, rtol=0.05, atol=60)
    small = Volume(voxel_size_cm=0.3, shape=(120, 120, 120))
    E = []
    for s in range(400):
        ev = sim.particle_gun(-13, 10.0, seed=s, position=[18.0, 18.0, 18.0], volume=small,
                              delta_rays=False)
        E += [p.kinetic_energy_mev + M.M_E for p in ev.particles if p.process == "decay"]
    E = np.array(E)
    assert E.size == 400
    assert E.max() <= MICHEL_ENDPOINT + 1e-6
    assert E.max() > 0.97 * MICHEL_ENDPOINT
    assert E.mean() == pytest.approx(36.98, abs=3 * E.std() / np.sqrt(E.size))   # 0.7 x 52.83


def test_stopping_muons_decay_or_capture():
    """mu+ always gives a Michel; mu- about 25% of the time (75% nuclear capture)."""
    small = Volume(voxel_size_cm=0.3, shape=(200, 200, 200))
    centre = [30.0, 30.0, 30.0]

    def michels(pdg, n):
        k = 0
        for s in range(n):
            ev = sim.particle_gun(pdg, 30.0, seed=s, position=centre, volume=small, delta_rays=False)
            m = [p for p in ev.particles if p.process == "decay" and abs(p.pdg) == 11]
            assert all(p.kinetic_energy_mev + M.M_E <= MICHEL_ENDPOINT + 1e-6 for p in m)
            k += len(m)
        return k

    assert michels(-13, 30) == 30
    frac = michels(13, 200) / 200
    assert 0.15 < frac < 0.35


def test_pion_plus_at_rest_gives_4mev_muon_then_michel():
    ev = sim.particle_gun(211, 20.0, seed=3, hadronic=False)
    kids = {p.pdg: p for p in ev.particles if p.process == "decay"}
    assert kids[-13].kinetic_energy_mev == pytest.approx(4.12, abs=0.05)
    assert -11 in kids and ev.particles[kids[-11].parent].pdg == -13
    assert (ev.semantic == 2).any()


def test_shower_containment_in_moliere_radii():
    f1, f2 = [], []
    for s in range(8):
        ev = sim.particle_gun(11, 500.0, seed=s, direction=[0, 0, 1])
        c = np.asarray(ev.particles[0].start_cm)
        p = ev.points + 0.15
        r = np.hypot(p[:, 0] - c[0], p[:, 1] - c[1])
        f1.append(ev.energy[r < M.MOLIERE_CM].sum() / ev.energy.sum())
        f2.append(ev.energy[r < 2 * M.MOLIERE_CM].sum() / ev.energy.sum())
    assert np.mean(f2) >= 0.95
    assert 0.85 <= np.mean(f1) <= 0.95


def test_shower_longitudinal_profile_follows_its_parametrisation():
    """Energy-weighted mean depth of 1 GeV electron showers vs the Gamma-profile mean a/b X0
    (plus the trunk and branch-length offsets, a few cm)."""
    a, b = longitudinal_params(1000.0)
    depths, weights = [], []
    big = Volume(voxel_size_cm=0.6, shape=(200, 200, 1000), origin_cm=(-60.0, -60.0, -1.2))
    for s in range(6):
        ev = sim.particle_gun(11, 1000.0, seed=s, direction=[0, 0, 1], position=[0, 0, 0], volume=big)
        depths.append(ev.points[:, 2] + 0.3)
        weights.append(ev.energy)
    mean = np.average(np.concatenate(depths), weights=np.concatenate(weights))
    assert mean == pytest.approx(a / b * M.X0_CM + 4.0, rel=0.15)


def test_photon_conversion_gap():
    gaps = []
    for s in range(300):
        ev = sim.particle_gun(22, 300.0, seed=s, direction=[0, 0, 1])
        g = ev.particles[0]
        gaps.append(np.linalg.norm(np.subtract(g.end_cm, g.start_cm)))
    gaps = np.array(gaps)
    lam = float(M.photon_attenuation_cm(300.0))
    assert lam == pytest.approx(9 / 7 * M.X0_CM, rel=0.15)
    assert gaps.mean() == pytest.approx(lam, abs=4 * lam / np.sqrt(gaps.size))
    # the visible shower starts after the gap: no energy near the vertex
    ev = sim.particle_gun(22, 300.0, seed=7, direction=[0, 0, 1])
    g = ev.particles[0]
    d0 = np.linalg.norm(ev.points + 0.15 - np.asarray(g.start_cm), axis=1)
    gap = np.linalg.norm(np.subtract(g.end_cm, g.start_cm))
    assert np.average(d0, weights=ev.energy) > gap


def _trunk_dedx(pdg, seed):
    ev = sim.particle_gun(pdg, 400.0, seed=seed, direction=[0, 0, 1], fluctuations=False)
    g = ev.particles[0]
    start = np.asarray(g.end_cm if pdg == 22 else g.start_cm)   # photon: the conversion point
    p = ev.points + 0.15
    dz = p[:, 2] - start[2]
    r = np.hypot(p[:, 0] - start[0], p[:, 1] - start[1])
    sel = (dz > 0.3) & (dz < 2.1) & (r < 1.0)
    return ev.energy[sel].sum() / 1.8


def test_trunk_one_mip_for_electrons_two_for_photons():
    e = np.median([_trunk_dedx(11, s) for s in range(6)])
    g = np.median([_trunk_dedx(22, s) for s in range(6)])
    assert 1.6 < e < 3.0, e
    assert 3.4 < g < 5.5, g


def test_pi0_decays_to_two_photons():
    ev = sim.particle_gun(111, 300.0, seed=5)
    gam = [p for p in ev.particles if p.pdg == 22 and p.process == "decay"]
    assert len(gam) == 2
    m = M.pdg_info(111)[0]
    assert sum(p.kinetic_energy_mev for p in gam) == pytest.approx(300.0 + m, rel=1e-6)
    p1, p2 = (np.asarray(p.momentum_mev) for p in gam)
    E1, E2 = (p.kinetic_energy_mev for p in gam)
    minv = np.sqrt(max((E1 + E2) ** 2 - np.sum((p1 + p2) ** 2), 0))
    assert minv == pytest.approx(m, rel=1e-3)


def test_delta_rays_rate_for_a_mip():
    """About 0.1 delta rays above 1 MeV per cm for a MIP (PHYSICS.md)."""
    n, length = 0, 0.0
    for s in range(5):
        ev = sim.particle_gun(13, 1000.0, seed=s, direction=[0, 0, 1], position=[0, 0, 0],
                              volume=LONG, mcs=False, hadronic=False, decays=False)
        n += sum(p.process == "delta" for p in ev.particles)
        length += float(M.csda_range_cm(13, 1000.0))
    assert 0.07 < n / length < 0.14


def test_recombination_and_electrons():
    assert float(M.recombination(M.MIP_DEDX)) == pytest.approx(0.70, abs=0.02)
    assert float(M.recombination(20.0)) == pytest.approx(0.32, abs=0.03)
    ev = sim.particle_gun(13, 800.0, seed=1, direction=[0, 0, 1], delta_rays=False)
    mip = ev.semantic == 1
    ratio = ev.n_electrons[mip].sum() / ev.energy[mip].sum() * M.W_ION_MEV
    assert ratio == pytest.approx(0.70, abs=0.05)
