"""tests/check_skips.py: the CI step that fails when the default run skips a test it should run."""
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("check_skips.py")


def junit(path: Path, *reasons: str) -> Path:
    cases = "".join(f'<testcase classname="tests.test_x" name="t{i}"><skipped type="pytest.skip" '
                    f'message="{r}">skip</skipped></testcase>' for i, r in enumerate(reasons))
    path.write_text(f'<testsuites><testsuite name="pytest"><testcase classname="tests.test_x" name="ok"/>'
                    f'{cases}</testsuite></testsuites>')
    return path


def check(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_machine_dependent_skips_pass(tmp_path):
    r = check(junit(tmp_path / "a.xml", "local Ray instance did not start: no shm",
                    "real PILArNet-M event not found (set LARSIGHT_SHARED to the shared folder)"))
    assert r.returncode == 0 and "2 skipped, all for accepted reasons" in r.stdout


def test_a_regression_turned_skip_fails_and_is_named(tmp_path):
    report = junit(tmp_path / "b.xml", "local Ray instance did not start", "no shipped VLM checkpoint")
    r = check(report)
    assert r.returncode == 1
    assert "NOT ALLOWED: skipped tests.test_x::t1: no shipped VLM checkpoint" in r.stdout
    assert "1 test(s) skipped that must run on CI" in r.stderr
    assert check(report, "--allow", "no shipped VLM").returncode == 0


def test_an_unreadable_report_is_a_clear_error(tmp_path):
    r = check(tmp_path / "missing.xml")
    assert r.returncode != 0 and "cannot read the pytest report" in r.stderr
