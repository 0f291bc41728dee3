"""Where the chat app's events come from: the simulator, an uploaded file, or the event index.

Every source returns a ``LoadedEvent``: a reference the agent understands (a ``sim:`` key of
the event index for simulated events, ``/abs/file.h5:INDEX`` for files), the event itself and a
short summary. Problems become an ``EventSourceError`` whose message is shown to the user as
it is (what was wrong and what to do). Events are kept in the agent's per-process registry by
reference (``agent.toolset.resolve``), so the display and the agent share one copy.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from larsight.agent.toolset import UnknownEventError, register, resolve
from larsight.events import formats
from larsight.events.model import Event, EventError
from larsight.tools.index_build import build_index
from larsight.tools.inputs import MIN_POINTS
from larsight.tools.retrieval import (EventRef, IndexNotFoundError, default_index_path,
                                      find_similar, open_index)
from larsight.ui.app_uploads import UploadStore
from larsight.ui.demo import particle_content

__all__ = ["EventSourceError", "LoadedEvent", "SIM_MODES", "SIM_VOXEL_CM", "MAX_UPLOAD_MB",
           "UPLOAD_SUFFIXES", "UPLOAD_READ_S", "simulate_event", "load_upload", "load_ref",
           "index_info", "load_from_index", "search_index", "similar_events", "build_small_index"]

SIM_MODES = {"nu": "neutrino interaction (nu_e CC / nu_mu CC / NC)",
             "mpv": "multi-particle vertex (particle gun)",
             "mpr": "multi-particle rain (particle gun)"}
SIM_VOXEL_CM = 0.6
"""Grid of simulated events: the encoder's grid and the event index's default, so that a
simulated event's key is the key the index stores."""
MAX_UPLOAD_MB = 200
UPLOAD_SUFFIXES = (".h5", ".hdf5", ".root")
UPLOAD_READ_S = 5.0
"""Longest the bounded reader may spend on one upload (counting its events, then reading the
one asked for): with a wait in the upload queue, a bad file is answered within 10 s."""


class EventSourceError(ValueError):
    """An event that cannot be loaded; the message is for the user."""


@dataclass
class LoadedEvent:
    ref: str
    event: Event = field(repr=False)
    source: str
    """Where it came from, in words ("simulated nu, seed 3, event 0", "upload run.h5, event 2")."""

    def summary(self) -> str:
        """Markdown: reference, size, energy and (for simulated / labelled events) the truth."""
        ev = self.event
        lines = [f"**Event** `{self.ref}`  ", f"{self.source}: {len(ev)} voxels of "
                 f"{ev.meta.volume.voxel_size_cm:g} cm, {ev.total_energy_mev:.0f} MeV deposited"]
        truth = []
        if ev.event_class:
            truth.append(f"class {ev.event_class}")
        inter = next((x for x in ev.interactions if x.event_class), None)
        if inter is not None and inter.nu_energy_mev:
            truth.append(f"E_nu {inter.nu_energy_mev:.0f} MeV")
        content = particle_content(ev)
        if content != "-":
            truth.append(f"primaries {content}")
        if truth:
            lines[-1] += "  "
            lines.append("Truth (kept from the agent): " + ", ".join(truth))
        return "\n".join(lines)


def _resolve(ref: str) -> Event:
    try:
        return resolve(ref)
    except UnknownEventError as e:
        raise EventSourceError(str(e)) from None


# ============================================================================ simulator
def sim_key(mode: str, seed: int, index: int, voxel_size_cm: float = SIM_VOXEL_CM) -> str:
    return EventRef(f"sim:{mode}", int(index), int(seed), float(voxel_size_cm)).key


def simulate_event(mode: str = "nu", seed: int = 0, index: int = 0) -> LoadedEvent:
    """Event ``index`` of the simulator stream ``mode`` / ``seed`` (reproducible)."""
    if mode not in SIM_MODES:
        raise EventSourceError(f"unknown simulator mode {mode!r}: choose one of {', '.join(SIM_MODES)}")
    for name, v in (("seed", seed), ("event number", index)):
        if v is None or int(v) != v or int(v) < 0:
            raise EventSourceError(f"the {name} must be a whole number >= 0, got {v!r}")
    ref = sim_key(mode, int(seed), int(index))
    ev = _resolve(ref)
    if len(ev) < MIN_POINTS:
        raise EventSourceError(f"simulated event {ref} left {len(ev)} voxel(s) above threshold "
                               f"(a neutrino can pass without a visible trace): try another seed")
    return LoadedEvent(ref, ev, f"simulated {mode}, seed {int(seed)}, event {int(index)}")


# ============================================================================ uploads
def _check_upload(path, shown: str, max_mb: float) -> Path:
    """The uploaded file, after the checks that need no parsing (type, arrival, size)."""
    src = Path(path)
    if src.suffix.lower() not in UPLOAD_SUFFIXES:
        raise EventSourceError(f"'{shown}' is not an event file: upload a PILArNet-M HDF5 file "
                               f"(.h5 / .hdf5) or a ROOT file (.root)")
    if not src.is_file():
        raise EventSourceError(f"the upload of '{shown}' did not arrive: try again")
    size_mb = src.stat().st_size / 2**20
    if size_mb > max_mb:
        raise EventSourceError(f"'{shown}' is {size_mb:.0f} MB; the limit is {max_mb:g} MB "
                               f"(cut the file with `larsight convert` or run the app with --max-upload-mb)")
    return src


def _read_upload(src: Path, shown: str, index: int, budget_s: float) -> tuple[Event, int, int]:
    """(event, its index from the start, events in the file), parsed by the bounded reader
    within ``budget_s`` in all; every failure is an ``EventSourceError`` naming ``shown``."""
    def unreadable(err: Exception) -> EventSourceError:
        detail = " ".join(str(err).replace(f"{src}: ", "").replace(str(src), f"'{shown}'").split())
        return EventSourceError(f"cannot read '{shown}' as a PILArNet-M HDF5 / ROOT event file: "
                                f"{detail or type(err).__name__}")

    t0 = time.monotonic()
    try:
        n = formats.count_untrusted(src, timeout_s=budget_s)
        if n == 0:
            raise EventSourceError(f"'{shown}' holds no events")
        if not -n <= index < n:
            raise EventSourceError(f"'{shown}' holds {n} event{'' if n == 1 else 's'}: choose an "
                                   f"event index 0..{n - 1} (or -{n}..-1 from the end)")
        left = round(max(0.5, budget_s - (time.monotonic() - t0)), 1)
        [ev] = formats.read_untrusted(src, index, timeout_s=left)
    except (EventError, OSError) as err:
        raise unreadable(err) from None
    return ev, index % n, n


def load_upload(path: Optional[str | os.PathLike], index: int = 0, upload_dir: str | os.PathLike = "uploads",
                max_mb: float = MAX_UPLOAD_MB, name: Optional[str] = None,
                store: Optional[UploadStore] = None, budget_s: float = UPLOAD_READ_S
                ) -> tuple[LoadedEvent, int]:
    """(event ``index`` of an uploaded PILArNet-M ``.h5`` / ``.root`` file, events in the file).

    The file is parsed by the bounded reader (``events.formats.read_untrusted``: a worker
    process with a time limit and a memory cap) straight from where it was uploaded; only a
    file that reads is kept, in ``store`` (default: an ``UploadStore`` on ``upload_dir`` capped
    at five times ``max_mb``), and the event is registered for the agent under its kept copy."""
    if not path:
        raise EventSourceError("no file uploaded: choose a PILArNet-M .h5 file or a .root file")
    shown = name or Path(path).name
    src = _check_upload(path, shown, max_mb)
    try:
        idx = int(index) if index is not None else 0
    except (TypeError, ValueError):
        raise EventSourceError(f"the event index must be a whole number, got {index!r}") from None
    ev, idx, n = _read_upload(src, shown, idx, budget_s)
    if len(ev) < MIN_POINTS:
        raise EventSourceError(f"event {idx} of '{shown}' has {len(ev)} point(s): nothing to show or ask about")
    store = store or UploadStore(upload_dir, cap_mb=5 * max_mb)
    dest = store.keep(src, src.suffix.lower())
    ref = register(ev.copy(meta=ev.meta.model_copy(update={"source": str(dest), "index": idx})))
    return LoadedEvent(ref, _resolve(ref), f"upload {shown}, event {idx} of {n}"), n


def load_ref(ref: str, source: Optional[str] = None) -> LoadedEvent:
    """An event by reference (``sim:`` key or ``file:index``), e.g. a gallery hit."""
    ev = _resolve(ref)
    return LoadedEvent(ref, ev, source or "event")


# ============================================================================ the event index
def index_info(index: Optional[str | os.PathLike] = None) -> tuple[bool, str]:
    """(an index exists, a line of Markdown saying what it holds or how to build one)."""
    path = Path(index).expanduser() if index else default_index_path()
    try:
        idx = open_index(path)
    except IndexNotFoundError:
        return False, (f"No event index at `{path}`. Build one with "
                       f"`larsight index build --simulate nu --n 1000 --out {path}`, "
                       f"or click **Build a small index** (simulated events, about a minute).")
    except Exception as e:  # noqa: BLE001 - a broken index must not break the app
        return False, f"The event index at `{path}` cannot be opened: {type(e).__name__}: {e}"
    counts = ", ".join(f"{k} {v}" for k, v in sorted(idx.class_counts().items()))
    return True, f"Event index `{path}`: {idx.n_events} events ({counts}); ids 0..{idx.n_events - 1}."


def _open(index):
    try:
        return open_index(Path(index).expanduser() if index else None)
    except IndexNotFoundError:
        raise EventSourceError(index_info(index)[1]) from None


def load_from_index(id_or_key: str, index: Optional[str | os.PathLike] = None) -> LoadedEvent:
    """An indexed event by its row id (``12``) or its key (``sim:nu:seed=3:voxel=0.6:index=12``
    or ``/abs/file.h5:7``)."""
    text = (id_or_key or "").strip()
    if not text:
        raise EventSourceError("give an event id (a number) or an event key from the index")
    idx = _open(index)
    if text.lstrip("#").isdigit():
        rows = idx.to_arrow(columns=["id", "key"], where=f"id = {int(text.lstrip('#'))}").to_pylist()
        if not rows:
            raise EventSourceError(f"no event with id {text} in the index (ids 0..{idx.n_events - 1})")
        key = rows[0]["key"]
    else:
        if idx.lookup(text, vectors=False) is None:
            raise EventSourceError(f"no event with key '{text}' in the index ({idx.n_events} events)")
        key = text
    ev = _resolve(key)
    return LoadedEvent(key, ev, f"index event {text}")


def search_index(text: str, k: int = 6, index: Optional[str | os.PathLike] = None):
    """The ``k`` indexed events closest to a text (text-to-event search); a ``SimilarResult``."""
    q = " ".join((text or "").split())
    if not q:
        raise EventSourceError("type what to look for, e.g. 'nu_e CC with a gap before the shower'")
    return find_similar(q, k=int(k), index=_open(index))


def similar_events(ref: str, k: int = 6, index: Optional[str | os.PathLike] = None):
    """The ``k`` indexed events nearest to the event ``ref`` (itself excluded); a ``SimilarResult``."""
    return find_similar(ref, k=int(k), index=_open(index), exclude_self=True)


def build_small_index(index: Optional[str | os.PathLike] = None, n: int = 64, seed: int = 2026,
                      progress: Optional[Callable[[float, str], Any]] = None):
    """Embed ``n`` simulated neutrino events into an index at ``index`` (default path) when none
    exists there; returns the ``IndexBuildReport``. ``progress(fraction, text)`` is told along."""
    path = Path(index).expanduser() if index else default_index_path()
    if index_info(path)[0]:
        raise EventSourceError(f"an index already exists at {path}; the app does not replace it "
                               f"(use `larsight index build` for that)")
    if progress:
        progress(0.0, f"embedding {n} simulated events into {path}")
    return build_index(f"sim:nu:seed={int(seed)}:n={int(n)}", path, progress=True,
                       command=f"larsight ui (small index: sim:nu:seed={int(seed)}:n={int(n)})")
