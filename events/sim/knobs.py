"""Every approximation of the simulator as a named knob (domain randomisation).

Each knob has today's value as its default, a physically sensible range, a unit, how it is
sampled per event when randomisation is on, and a one-line justification with its source
(numbers: shared/PHYSICS.md). ``Knobs`` holds one event's values; ``sample_knobs`` draws them.

    from larsight.events.sim.knobs import sample_knobs, knobs_from
    k = sample_knobs(np.random.default_rng(0), {"energy_scale": 1.05})   # all drawn, one fixed
    k = knobs_from({"dead_fraction": 0.02})                              # defaults + overrides

With every knob at its default the simulator makes exactly the events it made before the knobs
existed (bit for bit). ``render_markdown`` writes the table of docs/simulator_knobs.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping, Optional, Union

import numpy as np

from larsight.events.sim import medium as M

Value = Union[float, str]


class KnobError(ValueError):
    """An unknown knob, or a value outside its range."""


@dataclass(frozen=True)
class KnobSpec:
    """One knob: default, range (or choices), unit, sampling and why."""

    name: str
    default: Value
    lo: float = 0.0
    hi: float = 0.0
    unit: str = ""
    sampling: str = "uniform"            # uniform | log-uniform | choice
    choices: tuple = ()
    weights: tuple = ()                  # choice probabilities (default: equal)
    why: str = ""

    def check(self, value: Any) -> Value:
        """The value as the knob's type, or a KnobError naming knob, value and range."""
        if self.sampling == "choice":
            v = value
            if isinstance(value, str) and not isinstance(self.choices[0], str):
                try:
                    v = float(value)
                except ValueError:
                    pass
            if v not in self.choices:
                raise KnobError(f"knob {self.name}={value!r} is not one of {list(self.choices)}")
            return float(v) if not isinstance(v, str) else v
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise KnobError(f"knob {self.name}={value!r} is not a number "
                            f"(range [{self.lo}, {self.hi}] {self.unit})") from None
        if not (self.lo <= v <= self.hi):
            raise KnobError(f"knob {self.name}={v:g} is outside its range "
                            f"[{self.lo:g}, {self.hi:g}] {self.unit}".rstrip())
        return v

    def sample(self, rng: np.random.Generator) -> Value:
        if self.sampling == "choice":
            p = np.asarray(self.weights, float) if self.weights else None
            return self.check(self.choices[int(rng.choice(len(self.choices), p=p))])
        if self.sampling == "log-uniform":
            return float(np.exp(rng.uniform(np.log(self.lo), np.log(self.hi))))
        return float(rng.uniform(self.lo, self.hi))


_S = KnobSpec
SPECS: tuple[KnobSpec, ...] = (
    _S("recombination_model", "box", sampling="choice", choices=("box", "birks"), weights=(0.5, 0.5),
       why="charge per MeV: modified box (ArgoNeuT JINST 8 P08005) or Birks (ICARUS); PHYSICS.md"),
    _S("box_alpha", M.BOX_ALPHA, 0.89, 0.97, "",
       why="modified-box alpha 0.93 +- 0.02 (ArgoNeuT); covers later MicroBooNE/ProtoDUNE fits"),
    _S("box_beta", M.BOX_BETA, 0.18, 0.25, "(kV/cm)(g/cm2)/MeV",
       why="modified-box beta 0.212 (ArgoNeuT); MicroBooNE/ProtoDUNE fits lie within +-15 %"),
    _S("birks_a", M.BIRKS_A, 0.76, 0.84, "",
       why="Birks A 0.800 (ICARUS, PHYSICS.md) +- 5 %"),
    _S("birks_k", M.BIRKS_K, 0.040, 0.058, "(kV/cm)(g/cm2)/MeV",
       why="Birks k 0.0486 (ICARUS, PHYSICS.md) +- 20 %"),
    _S("threshold_mev", 0.01, 0.005, 0.2, "MeV", "log-uniform",
       why="voxel threshold: 0.01 MeV in Supera (PHYSICS.md); the real PILArNet-M event's "
           "smallest voxels are ~0.13 MeV"),
    _S("energy_scale", 1.0, 0.9, 1.1, "", why="calibration of the deposited energy, +-10 % (issue 15)"),
    _S("charge_noise", 0.0, 0.0, 0.1, "fraction",
       why="per-voxel Gaussian smearing of the energy (electronics noise, diffusion), up to 10 %"),
    _S("dead_fraction", 0.0, 0.0, 0.05, "fraction",
       why="voxels lost to dead channels: a few % of wires are unresponsive in running LArTPCs"),
    _S("noisy_rate", 0.0, 0.0, 0.02, "per real voxel",
       why="fake low-energy voxels (noise hits, 0.01-0.5 MeV) near the event, labelled LE"),
    _S("shower_depth_scale", 1.0, 0.85, 1.15, "",
       why="longitudinal profile: Tmax of Grindhammer-Peters / SPINE-LAr fit (PHYSICS.md) +-15 %"),
    _S("shower_depth_fluct", 0.0, 0.0, 0.2, "sigma of ln",
       why="shower-to-shower fluctuation of Tmax (Grindhammer-Peters: sigma(ln Tmax) ~ 0.1-0.2)"),
    _S("moliere_scale", 1.0, 0.85, 1.15, "",
       why="lateral spread: Moliere radius 9.04 cm (PDG, PHYSICS.md) +-15 % (parametrisation spread)"),
    _S("lateral_fluct", 0.0, 0.0, 0.2, "sigma of ln",
       why="shower-to-shower fluctuation of the lateral width"),
    _S("conversion_length_scale", 1.0, 0.85, 1.15, "",
       why="photon conversion length 9/7 X0 = 18 cm (PHYSICS.md; 22-28 cm at 10-100 MeV are "
           "estimates) +-15 %"),
    _S("delta_cut_mev", 1.0, 0.5, 3.0, "MeV", "log-uniform",
       why="explicit delta rays above this energy (1/T^2 spectrum, PHYSICS.md); below it the loss "
           "stays on the track"),
    _S("michel_smear", 0.0, 0.0, 0.1, "fraction",
       why="Michel energy: dN/dx = 2x^2(3-2x) (PHYSICS.md) smeared for radiative corrections "
           "and bound-muon decay"),
    _S("hadron_interaction_scale", 1.0, 0.8, 1.25, "", "log-uniform",
       why="hadron inelastic interaction length 85.8 cm (PDG 'from memory', PHYSICS.md); "
           "true pi/p lengths vary with energy"),
    _S("nu_qe_weight", 1.0, 0.7, 1.4, "", "log-uniform",
       why="weight of QE+MEC in the channel shares (PHYSICS.md estimates; generators disagree)"),
    _S("nu_res_weight", 1.0, 0.7, 1.4, "", "log-uniform",
       why="weight of RES in the channel shares (PHYSICS.md estimates)"),
    _S("nu_dis_weight", 1.0, 0.7, 1.4, "", "log-uniform",
       why="weight of DIS in the channel shares (PHYSICS.md estimates)"),
    _S("nu_coh_fraction", 0.0, 0.0, 0.03, "fraction",
       why="coherent pion production (lepton + one forward pion, no nucleon): ~1 % of CC at "
           "1-3 GeV"),
    _S("remnant_protons", 0.0, 0.0, 1.5, "mean per interaction",
       why="extra low-energy (5-60 MeV) protons from nuclear breakup / FSI of neutrino "
           "interactions (GENIE/NuWro differ here)"),
    _S("voxel_size_cm", 0.3, sampling="choice", choices=(0.3, 0.6), weights=(0.8, 0.2), unit="cm",
       why="the grid: PILArNet-M 3 mm voxels (PHYSICS.md); 6 mm for coarser detectors"),
)
SPEC_BY_NAME = {s.name: s for s in SPECS}
NAMES = tuple(SPEC_BY_NAME)


@dataclass(frozen=True)
class Knobs:
    """One event's knob values (defaults: the simulator as it was before the knobs)."""

    recombination_model: str = "box"
    box_alpha: float = M.BOX_ALPHA
    box_beta: float = M.BOX_BETA
    birks_a: float = M.BIRKS_A
    birks_k: float = M.BIRKS_K
    threshold_mev: float = 0.01
    energy_scale: float = 1.0
    charge_noise: float = 0.0
    dead_fraction: float = 0.0
    noisy_rate: float = 0.0
    shower_depth_scale: float = 1.0
    shower_depth_fluct: float = 0.0
    moliere_scale: float = 1.0
    lateral_fluct: float = 0.0
    conversion_length_scale: float = 1.0
    delta_cut_mev: float = 1.0
    michel_smear: float = 0.0
    hadron_interaction_scale: float = 1.0
    nu_qe_weight: float = 1.0
    nu_res_weight: float = 1.0
    nu_dis_weight: float = 1.0
    nu_coh_fraction: float = 0.0
    remnant_protons: float = 0.0
    voxel_size_cm: float = 0.3

    def as_dict(self) -> dict[str, Value]:
        return asdict(self)

    def channel_weights(self) -> Optional[np.ndarray]:
        """(QE+MEC, RES, DIS) weights, or None when all are 1 (the shares stay untouched)."""
        w = (self.nu_qe_weight, self.nu_res_weight, self.nu_dis_weight)
        return None if w == (1.0, 1.0, 1.0) else np.array(w)


def check_knobs(values: Optional[Mapping[str, Any]]) -> dict[str, Value]:
    """Validated copy of ``values``: unknown names and out-of-range values raise KnobError."""
    out: dict[str, Value] = {}
    for name, v in (values or {}).items():
        spec = SPEC_BY_NAME.get(name)
        if spec is None:
            raise KnobError(f"unknown knob {name!r}; valid knobs: {', '.join(NAMES)}")
        out[name] = spec.check(v)
    return out


def knobs_from(values: Optional[Mapping[str, Any]] = None, base: Optional[Knobs] = None) -> Knobs:
    """``base`` (default: all defaults) with ``values`` overridden, validated."""
    return replace(base or Knobs(), **check_knobs(values))


def sample_knobs(rng: np.random.Generator, fixed: Optional[Mapping[str, Any]] = None) -> Knobs:
    """Draw every knob from its range (in the order of ``SPECS``, so a draw does not depend on
    which knobs are fixed), then keep the ``fixed`` ones."""
    fixed = check_knobs(fixed)
    drawn = {s.name: s.sample(rng) for s in SPECS}
    drawn.update(fixed)
    return Knobs(**drawn)


KNOB_STREAM = 0x6B6E6F62  # 'knob': the knob draws use their own stream, never the event's


def event_knobs(seed: int, index: int, randomize: bool, fixed: Optional[Mapping[str, Any]],
                voxel_size_cm: float) -> Knobs:
    """The knobs of event ``index``: drawn from ``default_rng([seed, index, KNOB_STREAM])`` when
    ``randomize``, else the defaults (with the grid of the given volume); ``fixed`` wins."""
    if randomize:
        return sample_knobs(np.random.default_rng([int(seed), int(index), KNOB_STREAM]), fixed)
    return knobs_from(fixed, Knobs(voxel_size_cm=float(voxel_size_cm)))


def _fmt(v: Value) -> str:
    return v if isinstance(v, str) else f"{v:g}"


def render_markdown() -> str:
    """The knob table of docs/simulator_knobs.md (generated; a test checks the file matches)."""
    lines = [
        "# Simulator knobs",
        "",
        "Generated from `events/sim/knobs.py` (`render_markdown`); rewritten by "
        "`python -m larsight.evals.simulator_report` and `python -m larsight.events.sim.knobs` "
        "(do not edit by hand). `larsight simulate --list-knobs` prints the same table.",
        "",
        "Every approximation of the simulator is a knob. The default is the simulator's own "
        "behaviour (with all knobs at their defaults the events are bit-for-bit those of "
        "`simulate` without knobs). With `--randomize` (`simulate(..., randomize=True)`) every "
        "knob is drawn per event from its range, from a random stream seeded by (seed, event "
        "index), so each event stays reproducible on its own; knobs given with `--knob NAME=VALUE` "
        "(`knobs={...}`) are kept fixed. The values used go into the event's `meta.sim_knobs`.",
        "",
        "| knob | default | range | unit | sampling | justification (source) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in SPECS:
        rng_txt, samp = _range_text(s), s.sampling
        if s.sampling == "choice":
            w = s.weights or (1 / len(s.choices),) * len(s.choices)
            samp = "choice (p = " + ", ".join(f"{x:g}" for x in w) + ")"
        lines.append(f"| `{s.name}` | {_fmt(s.default)} | {rng_txt} | {s.unit} | {samp} | {s.why} |")
    lines += ["", "Recombination changes the ionisation-electron count per voxel (`n_electrons`), "
              "not the deposited energy. `box_*` act with the box model, `birks_*` with Birks. "
              "The `nu_*` knobs and `remnant_protons` act on neutrino (`nu`) events only.", ""]
    return "\n".join(lines)


def _range_text(s: KnobSpec) -> str:
    if s.sampling == "choice":
        return " / ".join(_fmt(c) for c in s.choices)
    return f"[{_fmt(s.lo)}, {_fmt(s.hi)}]"


def render_text() -> str:
    """The knob table as plain text (``larsight simulate --list-knobs``)."""
    rows = [("knob", "default", "range", "unit", "sampling")]
    rows += [(s.name, _fmt(s.default), _range_text(s), s.unit, s.sampling) for s in SPECS]
    width = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip() for r in rows)


def parse_setting(text: str) -> tuple[str, Value]:
    """'NAME=VALUE' -> (name, checked value); a KnobError names what is wrong."""
    name, sep, value = str(text).partition("=")
    name = name.strip()
    if not sep or not name or not value.strip():
        raise KnobError(f"--knob {text!r}: expected NAME=VALUE, e.g. energy_scale=1.05")
    return name, check_knobs({name: value.strip()})[name]


def write_markdown(path) -> None:
    """Write ``render_markdown()`` atomically."""
    from larsight.events.formats.atomic import atomic_open

    with atomic_open(path, encoding="utf-8") as f:
        f.write(render_markdown())


if __name__ == "__main__":   # regenerate docs/simulator_knobs.md
    from pathlib import Path
    write_markdown(Path(__file__).resolve().parents[2] / "docs" / "simulator_knobs.md")
