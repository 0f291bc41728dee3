"""Fail the CI run when a test that should run there was skipped.

    python tests/check_skips.py REPORT.xml [--allow REGEX ...]

``make test`` runs pytest with ``--junitxml=REPORT.xml`` and then this script: every skipped test
must have a reason matched by ``ALLOWED`` (or an ``--allow`` pattern); otherwise it prints the
skipped tests with their reasons and exits 1. A skip is how a fixture or test says "this machine
cannot run me"; on CI that is only acceptable for the machine-dependent reasons below, so a
regression that turns into a skip (a broken import, a missing checkpoint or wheel) fails the run.
GPU tests are deselected by ``-m "not gpu"``, not skipped, so they never reach this list.
"""
from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ALLOWED = {
    r"chromium is missing|is missing: `make test` installs Debian's chromium":
        "the browser test needs root or sudo to apt-get chromium (the Makefile says so)",
    r"local Ray instance did not start":
        "sandboxes may forbid the sockets / shared memory a local Ray cluster needs",
    r"real (PILArNet-M )?event not found":
        "the real PILArNet-M event lives in the shared folder beside the checkout, not in the repo",
    r"PostgreSQL server binaries are missing":
        "the feedback store's PostgreSQL test starts a server from the machine's binaries (Debian's "
        "postgresql package); the SQLite tests of the store run everywhere",
}
"""Skip reasons accepted on CI (regular expressions), each with why it depends on the machine."""


def skipped_tests(report: Path) -> list[tuple[str, str]]:
    """(test id, skip reason) of every skipped test case of a JUnit XML report."""
    try:
        root = ET.parse(report).getroot()
    except (OSError, ET.ParseError) as err:
        raise SystemExit(f"check_skips: cannot read the pytest report {report}: {err}") from None
    out = []
    for case in root.iter("testcase"):
        skip = case.find("skipped")
        if skip is not None:
            name = f"{case.get('classname', '?')}::{case.get('name', '?')}"
            out.append((name, skip.get("message") or (skip.text or "").strip()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path, help="pytest --junitxml output")
    ap.add_argument("--allow", action="append", default=[], metavar="REGEX",
                    help="another accepted skip reason (regular expression)")
    args = ap.parse_args(argv)
    patterns = [re.compile(p) for p in list(ALLOWED) + args.allow]
    skipped = skipped_tests(args.report)
    bad = [(name, why) for name, why in skipped if not any(p.search(why) for p in patterns)]
    for name, why in skipped:
        print(f"{'NOT ALLOWED' if (name, why) in bad else 'allowed'}: skipped {name}: {why}")
    if bad:
        print(f"check_skips: {len(bad)} test(s) skipped that must run on CI (reasons above; accepted "
              f"reasons are listed in tests/check_skips.py)", file=sys.stderr)
        return 1
    print(f"check_skips: {len(skipped)} skipped, all for accepted reasons")
    return 0


if __name__ == "__main__":
    sys.exit(main())
