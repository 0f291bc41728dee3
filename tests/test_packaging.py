"""The install: one importable name (`larsight`), every layer folder packaged, no top-level
`events` / `tools` / ... that could collide with a physicist's other packages."""
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("events", "encoder", "qformer", "tools", "agent", "evals", "ui")


def _declared_packages() -> set[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def test_every_package_folder_is_declared_under_larsight():
    on_disk = {"larsight"}
    for layer in LAYERS:
        for init in (REPO / layer).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO).parts
            on_disk.add(".".join(("larsight",) + parts))
    assert _declared_packages() == on_disk


def _import_in_fresh_interpreter(tmp_path, statement: str) -> subprocess.CompletedProcess:
    # run outside the repository: the current folder must not make `import tools` work
    return subprocess.run([sys.executable, "-c", statement], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)


def test_layers_import_under_larsight(tmp_path):
    r = _import_in_fresh_interpreter(
        tmp_path, "from larsight import tools, events, agent; import larsight.tools; print(tools.__name__)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "larsight.tools"


@pytest.mark.parametrize("name", LAYERS)
def test_no_top_level_layer_names(tmp_path, name):
    r = _import_in_fresh_interpreter(tmp_path, f"import {name}")
    # another installed distribution may legitimately own the name; it must not be ours
    if r.returncode == 0:
        r = _import_in_fresh_interpreter(tmp_path, f"import {name}; print({name}.__file__)")
        assert str(REPO) not in r.stdout, f"`import {name}` resolves to larsight's folder"
    else:
        assert "ModuleNotFoundError" in r.stderr


def test_console_script_points_into_the_namespace():
    scripts = {e.name: e.value for e in metadata.entry_points(group="console_scripts")}
    assert scripts.get("larsight") == "larsight.ui.cli:main"
