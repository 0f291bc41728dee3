"""examples/tool_api.ipynb runs top to bottom (nbclient, a kernel on this interpreter), walks
through all seven tools, and is stored with its outputs cleared."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "tool_api.ipynb"
KERNEL = "larsight-test-python"
TOOLS = ("segment", "find_vertex", "reconstruct", "classify_event", "find_similar", "describe",
         "render")


@pytest.fixture
def kernel_name(tmp_path, monkeypatch) -> str:
    """A kernelspec for this very interpreter (so the notebook sees the project's packages
    whatever kernels the machine has installed), found through JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "larsight test", "language": "python",
        "env": {"PYTHONPATH": pythonpath}}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


def test_notebook_is_stored_clean_and_covers_every_tool():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), \
        "store the notebook with its outputs cleared"
    source = "\n".join(c.source for c in code)
    headings = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for tool in TOOLS:
        assert f"{tool}(" in source, f"the notebook never calls {tool}"
        assert f"`{tool}`" in headings, f"no markdown explains {tool}"


def test_notebook_runs(kernel_name):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print('KERNEL', sys.executable)"))
    client = nbclient.NotebookClient(nb, kernel_name=kernel_name, timeout=300,
                                     resources={"metadata": {"path": str(REPO)}})
    client.execute()      # raises CellExecutionError, with the cell and its traceback, on error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    plots = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    # results draw as tables with units; figures come out as plotly; bad input is explained
    assert sum("<table" in h for h in html) >= 6 and any("[MeV]" in h for h in html)
    assert any("events like event" in h for h in html)              # find_similar's table
    assert len(plots) >= 2
    assert f"KERNEL {sys.executable}" in text                     # the kernel ran this interpreter
    assert "unknown event index 7" in text and "holds 2 events" in text
    assert "is empty (0 points)" in text and "event file not found" in text
