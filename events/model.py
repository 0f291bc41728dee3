"""The one in-memory event type: numpy arrays for per-point data, pydantic for the tables.

Coordinates are detector coordinates in cm; for voxelised data a point is the voxel index times
the voxel size plus the volume origin (the PILArNet-M convention: index * 0.3 cm), so voxel
indices are recovered exactly by ``Event.voxel_indices()``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Annotated, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SEMANTIC_CLASSES = ("shower", "track", "michel", "delta", "low_energy")
"""Per-point semantic labels, SPINE / PILArNet convention (index = label)."""

PID_CLASSES = ("photon", "electron", "muon", "pion", "proton", "kaon")
"""Particle-identification classes (index = PILArNet PID code; -1 means none)."""

EVENT_CLASSES = ("nue_cc", "numu_cc", "nc")
"""Interaction classes used by the VLM paper."""

PROCESSES = (
    "primary", "decay", "conversion", "compton", "photoelectric", "delta", "hadronic",
    "capture", "brem", "annihilation", "other",
)
"""Creation processes recorded in the particle table (index used by the file formats)."""

# Physical bounds: values beyond them are damage or forgery, not physics. Generous on purpose
# (orders of magnitude above anything a LArTPC records) so that no real event is refused.
MAX_VOXEL_ENERGY_MEV = 1e6
"""Largest energy deposit accepted in one voxel (a TeV; a MIP leaves ~1 MeV per 3 mm voxel)."""
MAX_ENERGY_MEV = 1e8
"""Largest kinetic, deposited or neutrino energy and momentum component in the truth tables."""
MAX_COORDINATE_CM = 1e5
"""Largest |coordinate| of a table position or volume origin (1 km: beyond any detector hall)."""
MAX_VOXEL_SIZE_CM = 100.0
"""Largest voxel edge accepted (PILArNet-M: 0.3 cm)."""
MAX_GRID_VOXELS = 10 ** 11
"""Largest number of voxels of a volume's grid (PILArNet-M: 768^3 = 4.5e8)."""
MAX_DX_CM = 1e3
"""Largest per-point step length ``dx_cm`` accepted."""
MAX_ELECTRONS = 1e11
"""Largest ``n_electrons`` per point (MAX_VOXEL_ENERGY_MEV / 23.6 eV per ion pair is 4e10)."""
INT32_MIN, INT32_MAX = -2 ** 31, 2 ** 31 - 1

_Coord = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_COORDINATE_CM, le=MAX_COORDINATE_CM)]
_Mom = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_ENERGY_MEV, le=MAX_ENERGY_MEV)]
Vec3 = tuple[_Coord, _Coord, _Coord]
"""A finite position in cm (NaN, inf and |x| > MAX_COORDINATE_CM are refused)."""
MomVec3 = tuple[_Mom, _Mom, _Mom]
_Int32 = Annotated[int, Field(ge=INT32_MIN, le=INT32_MAX)]


def validation_summary(exc: ValidationError) -> str:
    """A pydantic error on one line: ``field.path: message (got value)``, first three errors."""
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "value"
        value = repr(err.get("input"))
        value = value if len(value) <= 40 else value[:37] + "..."
        parts.append(f"{loc}: {err.get('msg', 'invalid')} (got {value})")
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


class EventError(ValueError):
    """An event (or a file holding events) is malformed; the message names the field."""


class EventFileError(EventError):
    """A file could not be read into events: damaged, foreign, or beyond a reading bound.

    The one-line message names the file and the problem. ``kind`` says what fired: ``"invalid"``
    (the file was read and refused), ``"timeout"`` / ``"memory"`` (a bound of the bounded reader,
    :mod:`larsight.events.formats.untrusted`) or ``"crash"`` (its worker process died)."""

    def __init__(self, message: str, kind: str = "invalid"):
        super().__init__(message)
        self.kind = kind

    def __reduce__(self):
        return type(self), (str(self), self.kind)


class Volume(BaseModel):
    """An axis-aligned active volume on a regular voxel grid."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    voxel_size_cm: float = Field(0.3, gt=0, le=MAX_VOXEL_SIZE_CM, description="edge of one cubic voxel, cm")
    shape: tuple[Annotated[int, Field(ge=1, le=INT32_MAX)], Annotated[int, Field(ge=1, le=INT32_MAX)],
                 Annotated[int, Field(ge=1, le=INT32_MAX)]] = Field(
        (768, 768, 768), description="number of voxels per axis")
    origin_cm: Vec3 = Field((0.0, 0.0, 0.0), description="coordinate of voxel (0,0,0), cm")

    @field_validator("shape")
    @classmethod
    def _grid_size(cls, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        n = int(np.prod(np.asarray(shape, dtype=object)))
        if n > MAX_GRID_VOXELS:
            raise ValueError(f"{n:.3g} voxels, more than the {MAX_GRID_VOXELS:.0e} accepted")
        return shape

    @property
    def lower_cm(self) -> np.ndarray:
        return np.asarray(self.origin_cm, dtype=np.float64)

    @property
    def upper_cm(self) -> np.ndarray:
        return self.lower_cm + np.asarray(self.shape, dtype=np.float64) * self.voxel_size_cm

    @property
    def size_cm(self) -> np.ndarray:
        return self.upper_cm - self.lower_cm

    def voxel_index(self, points_cm: np.ndarray) -> np.ndarray:
        """Integer voxel indices of points (the 1e-3 voxel tolerance absorbs float32 rounding
        of ``index * voxel_size``)."""
        p = np.asarray(points_cm, dtype=np.float64)
        return np.floor((p - self.lower_cm) / self.voxel_size_cm + 1e-3).astype(np.int64)

    def contains(self, points_cm: np.ndarray) -> np.ndarray:
        """Boolean mask of points whose voxel lies on the grid (consistent with ``voxel_index``)."""
        idx = self.voxel_index(points_cm)
        return np.all((idx >= 0) & (idx < np.asarray(self.shape)), axis=-1)

    def coarsened(self, factor: int) -> "Volume":
        """The same volume on a grid ``factor`` times coarser."""
        if factor < 1 or any(s % factor for s in self.shape):
            raise EventError(f"Volume.coarsened: factor {factor} does not divide shape {self.shape}")
        return Volume(voxel_size_cm=self.voxel_size_cm * factor,
                      shape=tuple(s // factor for s in self.shape), origin_cm=self.origin_cm)


PILARNET_VOLUME = Volume()
"""PILArNet-Medium geometry: 768^3 voxels of 3 mm, a (2.304 m)^3 cube."""


class Particle(BaseModel):
    """One row of the particle table (truth)."""

    model_config = ConfigDict(allow_inf_nan=False)

    id: _Int32 = Field(description="particle (group) id; per-point `particle` labels refer to it")
    pdg: _Int32 = Field(0, description="PDG code (0 if unknown)")
    pid: int = Field(-1, ge=-1, le=len(PID_CLASSES) - 1, description="PID class index, -1 none")
    parent: _Int32 = Field(-1, description="parent particle id, -1 for a primary")
    process: str = Field("primary", description="creation process, one of PROCESSES")
    interaction: _Int32 = Field(-1, description="interaction id, -1 for none")
    semantic: int = Field(-1, ge=-1, le=4, description="dominant semantic class of its voxels")
    start_cm: Vec3 = Field((0.0, 0.0, 0.0), description="creation point, cm")
    end_cm: Vec3 = Field((0.0, 0.0, 0.0), description="end point (stop, decay, interaction), cm")
    momentum_mev: MomVec3 = Field((0.0, 0.0, 0.0), description="initial momentum, MeV/c")
    kinetic_energy_mev: float = Field(0.0, ge=0, le=MAX_ENERGY_MEV, description="initial kinetic energy, MeV")
    deposited_energy_mev: float = Field(0.0, ge=0, le=MAX_ENERGY_MEV, description="energy in its voxels, MeV")
    n_voxels: int = Field(0, ge=0, le=INT32_MAX, description="number of voxels labelled with this particle")

    @property
    def pid_name(self) -> str:
        return PID_CLASSES[self.pid] if self.pid >= 0 else "none"


class Interaction(BaseModel):
    """One row of the interaction table (truth)."""

    model_config = ConfigDict(allow_inf_nan=False)

    id: _Int32
    vertex_cm: Vec3 = Field((0.0, 0.0, 0.0), description="interaction vertex, cm")
    nu_pdg: _Int32 = Field(0, description="neutrino PDG code (12, 14, -12, -14); 0 for a particle gun")
    current: Optional[Literal["CC", "NC"]] = None
    channel: Optional[Literal["QE", "MEC", "RES", "DIS", "COH", "GUN"]] = None
    nu_energy_mev: float = Field(0.0, ge=0, le=MAX_ENERGY_MEV, description="neutrino energy, MeV (0 for a gun)")
    event_class: Optional[Literal["nue_cc", "numu_cc", "nc"]] = None


class EventMeta(BaseModel):
    """Provenance and geometry."""

    model_config = ConfigDict(allow_inf_nan=False)

    volume: Volume = PILARNET_VOLUME
    source: Optional[str] = Field(None, description="file the event was read from")
    index: Optional[int] = Field(None, description="position of the event in that file")
    event_id: Optional[int] = None
    generator: Optional[str] = Field(None, description="e.g. 'larsight.sim 0.1 (nu)' or 'PILArNet-M'")
    seed: Optional[int] = Field(None, description="simulator seed that reproduces this event")
    sim_knobs: Optional[dict[str, float | str]] = Field(
        None, description="simulator knob values of this event (events.sim.knobs); None: defaults")


_LABEL_RANGES = {
    "semantic": (-1, len(SEMANTIC_CLASSES) - 1),
    "pid": (-1, len(PID_CLASSES) - 1),
    "particle": (-1, INT32_MAX),
    "fragment": (-1, INT32_MAX),
    "interaction": (-1, INT32_MAX),
}
"""Accepted label values per integer array (-1 = none), checked BEFORE the narrowing cast so
that e.g. a group id of 2**40 is refused rather than wrapped onto particle 0."""


def _check_label_range(name: str, arr: np.ndarray, dtype) -> None:
    if not arr.size:
        return
    lo_ok, hi_ok = _LABEL_RANGES.get(name, (np.iinfo(dtype).min, np.iinfo(dtype).max))
    lo, hi = arr.min(), arr.max()
    if lo < lo_ok or hi > hi_ok:
        bad = int(np.flatnonzero((arr < lo_ok) | (arr > hi_ok))[0])
        raise EventError(f"Event.{name}: labels must be in {lo_ok}..{hi_ok}, found {arr[bad]} "
                         f"at point {bad}")


# Per-point arrays: name -> (dtype, number of columns or None for 1-D).
_POINT_ARRAYS: dict[str, tuple[type, Optional[int]]] = {
    "points": (np.float32, 3),
    "energy": (np.float32, None),
    "semantic": (np.int8, None),
    "particle": (np.int32, None),
    "fragment": (np.int32, None),
    "interaction": (np.int32, None),
    "pid": (np.int8, None),
    "n_electrons": (np.float32, None),
    "time_us": (np.float32, None),
    "dx_cm": (np.float32, None),
}


@dataclass(eq=False)
class Event:
    """A 3D LArTPC event.

    Required: ``points`` (N,3) cm and ``energy`` (N,) MeV. Optional per-point truth (N,):
    ``semantic`` (0 shower, 1 track, 2 Michel, 3 delta, 4 low energy), ``particle`` (instance
    = PILArNet group id, -1 none), ``fragment`` (PILArNet fragment id), ``interaction`` (-1
    background), ``pid`` (per-point PID of its particle, -1 none), and detector quantities
    ``n_electrons`` (ionisation electrons after recombination), ``time_us``, ``dx_cm``.
    Tables: ``particles``, ``interactions``. Everything is validated on construction, and any
    violation raises :class:`EventError` naming the field: NaN/inf anywhere (arrays, tables,
    volume), negative or non-physical values (energy per voxel above ``MAX_VOXEL_ENERGY_MEV``,
    negative ``n_electrons`` / ``dx_cm``, either above ``MAX_ELECTRONS`` / ``MAX_DX_CM``, table
    energies above
    ``MAX_ENERGY_MEV``), labels out of range (checked before the cast to their dtype), points
    outside the volume, and volumes beyond ``MAX_VOXEL_SIZE_CM`` / ``MAX_GRID_VOXELS``.
    """

    points: np.ndarray
    energy: np.ndarray
    semantic: Optional[np.ndarray] = None
    particle: Optional[np.ndarray] = None
    fragment: Optional[np.ndarray] = None
    interaction: Optional[np.ndarray] = None
    pid: Optional[np.ndarray] = None
    n_electrons: Optional[np.ndarray] = None
    time_us: Optional[np.ndarray] = None
    dx_cm: Optional[np.ndarray] = None
    particles: list[Particle] = field(default_factory=list)
    interactions: list[Interaction] = field(default_factory=list)
    meta: EventMeta = field(default_factory=EventMeta)

    def __post_init__(self) -> None:
        try:
            if not isinstance(self.meta, EventMeta):
                self.meta = EventMeta.model_validate(self.meta)
        except ValidationError as exc:
            raise EventError(f"Event.meta: {validation_summary(exc)}") from None
        for name, model in (("particles", Particle), ("interactions", Interaction)):
            rows = []
            for k, row in enumerate(getattr(self, name)):
                try:
                    rows.append(row if isinstance(row, model) else model.model_validate(row))
                except ValidationError as exc:
                    raise EventError(f"Event.{name}[{k}]: {validation_summary(exc)}") from None
            setattr(self, name, rows)
        self._coerce_and_validate()

    # ------------------------------------------------------------------ validation
    def _coerce_and_validate(self) -> None:
        n = None
        for name, (dtype, ncol) in _POINT_ARRAYS.items():
            value = getattr(self, name)
            if value is None:
                if name in ("points", "energy"):
                    raise EventError(f"Event.{name} is required")
                continue
            arr = np.asarray(value)
            if arr.dtype == object:
                raise EventError(f"Event.{name}: not a numeric array")
            expected = f"(N, {ncol})" if ncol else "(N,)"
            if (ncol and (arr.ndim != 2 or arr.shape[1] != ncol)) or (not ncol and arr.ndim != 1):
                raise EventError(f"Event.{name}: expected shape {expected}, got {arr.shape}")
            if n is None:
                n = arr.shape[0]
            elif arr.shape[0] != n:
                raise EventError(f"Event.{name}: has {arr.shape[0]} rows but the event has {n} points")
            if arr.dtype.kind not in "biuf":
                raise EventError(f"Event.{name}: not a numeric array (dtype {arr.dtype})")
            if np.issubdtype(dtype, np.floating):
                with np.errstate(all="ignore"):
                    finite = np.isfinite(arr) & (np.abs(arr) <= np.finfo(dtype).max)
                if not np.all(finite):
                    bad = int(np.flatnonzero(~finite.reshape(arr.shape[0], -1).all(1))[0])
                    raise EventError(f"Event.{name}: non-finite value (NaN or inf, or beyond "
                                     f"float32) at point {bad}")
            else:
                if arr.dtype.kind == "f" and arr.size and not np.all(np.mod(arr, 1) == 0):
                    raise EventError(f"Event.{name}: labels must be integers")
                _check_label_range(name, arr, dtype)
            setattr(self, name, np.ascontiguousarray(arr, dtype=dtype))
        if np.any(self.energy < 0):
            bad = int(np.flatnonzero(self.energy < 0)[0])
            raise EventError(f"Event.energy: negative energy {self.energy[bad]:.4g} MeV at point {bad}")
        if np.any(self.energy > MAX_VOXEL_ENERGY_MEV):
            bad = int(np.flatnonzero(self.energy > MAX_VOXEL_ENERGY_MEV)[0])
            raise EventError(f"Event.energy: {self.energy[bad]:.4g} MeV at point {bad} is beyond "
                             f"the {MAX_VOXEL_ENERGY_MEV:.0e} MeV accepted per voxel")
        for name, upper, unit in (("n_electrons", MAX_ELECTRONS, ""), ("dx_cm", MAX_DX_CM, " cm")):
            arr = getattr(self, name)
            if arr is None or not arr.size:
                continue
            if np.any(arr < 0):
                bad = int(np.flatnonzero(arr < 0)[0])
                raise EventError(f"Event.{name}: negative value {arr[bad]:.4g} at point {bad}")
            if upper is not None and np.any(arr > upper):
                bad = int(np.flatnonzero(arr > upper)[0])
                raise EventError(f"Event.{name}: {arr[bad]:.4g}{unit} at point {bad} is beyond "
                                 f"the {upper:g}{unit} accepted")
        inside = self.meta.volume.contains(self.points)
        if not np.all(inside):
            bad = int(np.flatnonzero(~inside)[0])
            v = self.meta.volume
            raise EventError(
                f"Event.points: point {bad} at {self.points[bad].tolist()} cm is outside the volume "
                f"[{v.lower_cm.tolist()}, {v.upper_cm.tolist()}) cm")

    # ------------------------------------------------------------------ convenience
    def __len__(self) -> int:
        return int(self.points.shape[0])

    def __repr__(self) -> str:
        cls = self.event_class or "-"
        return (f"Event(n_points={len(self)}, energy={self.energy.sum():.1f} MeV, "
                f"particles={len(self.particles)}, interactions={len(self.interactions)}, "
                f"class={cls}, source={self.meta.source!r}, index={self.meta.index})")

    @property
    def event_class(self) -> Optional[str]:
        """Class of the first neutrino interaction (``nue_cc``, ``numu_cc``, ``nc``), if any."""
        for inter in self.interactions:
            if inter.event_class:
                return inter.event_class
        return None

    @property
    def total_energy_mev(self) -> float:
        return float(self.energy.sum(dtype=np.float64))

    def voxel_indices(self) -> np.ndarray:
        """Integer voxel indices (N,3) of the points on the event's grid."""
        return self.meta.volume.voxel_index(self.points)

    def point_arrays(self) -> dict[str, np.ndarray]:
        """The per-point arrays that are set, by name."""
        return {name: getattr(self, name) for name in _POINT_ARRAYS if getattr(self, name) is not None}

    def select(self, mask: np.ndarray) -> "Event":
        """A new event with only the points where ``mask`` is true (tables kept as they are)."""
        mask = np.asarray(mask)
        return replace(self, **{k: v[mask] for k, v in self.point_arrays().items()})

    def copy(self, **changes) -> "Event":
        return replace(self, **changes)

    def equals(self, other: "Event", *, meta: bool = False) -> bool:
        """Exact equality of arrays and tables (and of ``meta`` if asked)."""
        mine, theirs = self.point_arrays(), other.point_arrays()
        if mine.keys() != theirs.keys():
            return False
        if any(not np.array_equal(mine[k], theirs[k]) for k in mine):
            return False
        if self.particles != other.particles or self.interactions != other.interactions:
            return False
        return not meta or self.meta == other.meta


POINT_ARRAY_NAMES = tuple(_POINT_ARRAYS)
