"""Shared test fixtures."""
import os
from pathlib import Path

import numpy as np
import pytest

from larsight import events
from larsight.agent.toolset import register


def _real_event_path() -> Path | None:
    """The real PILArNet-M event lives in the shared folder beside the checkout (never copied in)."""
    name = Path("data") / "pilarnet_m_test_event_7675.npz"
    candidates = [Path(os.environ["LARSIGHT_SHARED"]) / name] if "LARSIGHT_SHARED" in os.environ else []
    candidates += [Path(__file__).resolve().parents[2] / "shared" / name, Path("/work/shared") / name]
    return next((p for p in candidates if p.exists()), None)


REAL_EVENT_NPZ = _real_event_path()


@pytest.fixture
def real_event_npz() -> Path:
    if REAL_EVENT_NPZ is None:
        pytest.skip("real PILArNet-M event not found (set LARSIGHT_SHARED to the shared folder)")
    return REAL_EVENT_NPZ


@pytest.fixture
def real_event(real_event_npz) -> events.Event:
    """The real event as an Event (its pid 5 = none becomes -1; instance -1 = none)."""
    d = np.load(real_event_npz)
    pid = d["pid"].astype(np.int8)
    pid[pid == 5] = -1
    return events.Event(points=d["voxels"].astype(np.float32) * np.float32(0.3),
                        energy=d["energy_mev"], semantic=d["semantic"],
                        particle=d["instance"].astype(np.int32), pid=pid)


@pytest.fixture
def ref() -> str:
    """A registered three-point event (the agent's tools take it by this reference)."""
    ev = events.Event(points=np.array([[1, 1, 1], [2, 2, 2], [3, 3, 3]], np.float32), energy=np.ones(3, np.float32))
    return register(ev)


@pytest.fixture(scope="session")
def lm_cache(tmp_path_factory) -> Path:
    """A larsight cache for this test session (never the user's ~/.cache/larsight); all
    pytest-xdist workers of one run share it (``ensure_hf_dir`` locks, so one converts)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.getbasetemp().parent / "larsight-cache"
        path.mkdir(exist_ok=True)
        return path
    return tmp_path_factory.mktemp("larsight-cache")


@pytest.fixture(scope="session")
def smollm2_dir(lm_cache) -> Path:
    """The bundled SmolLM2-135M-Instruct converted to a Hugging Face folder (once per run)."""
    from larsight.qformer.lm import default_gguf_path, ensure_hf_dir

    try:
        gguf = default_gguf_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return ensure_hf_dir(gguf, cache_dir=lm_cache)


@pytest.fixture(scope="session")
def hanging_h5(tmp_path_factory) -> Path:
    """A 5-event file on which libhdf5 spins forever in ``Dataset.__getitem__`` (issue 18); only
    a bounded reader (``events.formats.read_untrusted``) returns from it."""
    from larsight.evals.ui_load import write_hanging_h5

    return write_hanging_h5(tmp_path_factory.mktemp("hanging") / "corrupt.h5")
