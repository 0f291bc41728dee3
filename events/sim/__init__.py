"""larsight's physics simulator (no GEANT4): toy neutrino interactions and PILArNet's particle-gun
modes, transported through liquid argon and voxelised with SPINE-style truth labels.

    from larsight.events import sim
    ev = sim.particle_gun(13, 500.0, seed=1)              # one muon of 500 MeV
    ev = sim.neutrino(seed=0, index=3)                    # nu_e CC / nu_mu CC / NC
    for ev in sim.simulate("mpv", 100, seed=7): ...       # event i from default_rng([seed, i])
    sim.simulate_file("out.h5", "nu", 10000, seed=1)      # multiprocessing + events.write
    sim.simulate("nu", 100, seed=7, randomize=True, knobs={"energy_scale": 1.05})
                                                          # domain randomisation (sim.knobs)

Physics numbers: shared/PHYSICS.md; the model and its shortcuts: events/sim/transport.py.
"""
from larsight.events.sim.knobs import KnobError, Knobs, knobs_from, sample_knobs
from larsight.events.sim.generators import VERSION, mpr, mpv, neutrino, particle_gun
from larsight.events.sim.medium import csda_range_cm, range_table
from larsight.events.sim.run import MODES, simulate, simulate_file
from larsight.events.sim.transport import SimOptions

__all__ = ["particle_gun", "neutrino", "mpv", "mpr", "simulate", "simulate_file", "SimOptions",
           "csda_range_cm", "range_table", "MODES", "VERSION", "Knobs", "KnobError",
           "knobs_from", "sample_knobs"]
