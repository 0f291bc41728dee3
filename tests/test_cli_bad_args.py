"""Every `larsight` verb given bad arguments (issue 18, item 5): a one-line error on stderr, a
non-zero exit code from the documented set, and never a traceback.

The parser is walked, so a verb or an option added later is covered without editing this file:
an unknown option for every verb, and for every numeric option non-numbers, NaN, infinities and
values outside its bounds. Then every path argument is given a missing file, a file that is not
an event file, a folder, or an output that cannot be written.
"""
import argparse

import numpy as np
import pytest

from larsight import events
from larsight.events.formats import write
from larsight.ui.cli import build_parser, main
from larsight.ui.cli_args import EXIT_BAD_INPUT, EXIT_NO_ANSWER, EXIT_USAGE, Bounded


def _verbs(parser, path=()):
    """(argv prefix, parser) of every verb, nested ones (`index build`) included."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, sub in subs[0].choices.items():
        yield from _verbs(sub, path + (name,))


VERBS = list(_verbs(build_parser()))


def _one_line_error(capsys) -> str:
    out = capsys.readouterr()
    lines = [x for x in out.err.splitlines() if x.strip()]
    assert len(lines) == 1, out.err
    assert "error" in lines[0] and "Traceback" not in out.err + out.out
    return lines[0]


def test_every_verb_is_walked():
    names = {" ".join(p) for p, _ in VERBS}
    assert {"simulate", "convert", "inspect", "ask", "classify", "ui", "index build",
            "index search", "eval encoder", "eval agent", "pretrain", "finetune", "align"} <= names


@pytest.mark.parametrize("path", [p for p, _ in VERBS], ids=lambda p: " ".join(p))
def test_unknown_option_is_a_one_line_usage_error(path, capsys):
    with pytest.raises(SystemExit) as ex:
        main([*path, "--no-such-option"])
    assert ex.value.code == EXIT_USAGE
    line = _one_line_error(capsys)
    assert line.startswith("larsight")


def _bad_values(t: Bounded) -> list[str]:
    bad = ["abc", "", "nan", "inf", "-inf"]
    if t.kind is int:
        bad += ["1.5", "1e3"]
    if t.lo is not None:
        bad.append(str(t.kind(t.lo)) if t.lo_open else str(t.kind(t.lo - 1)))
    if t.hi is not None:
        bad.append(str(t.kind(t.hi * 2 + 1)))
    return bad


NUMERIC = [(path, act.option_strings[0], act.type) for path, p in VERBS for act in p._actions
           if act.option_strings and isinstance(act.type, Bounded)]


def test_no_numeric_option_is_unbounded():
    # plain int / float would let -1, nan and inf through to the layers
    loose = [(" ".join(path), act.option_strings[0]) for path, p in VERBS for act in p._actions
             if act.type in (int, float)]
    assert loose == []
    assert len(NUMERIC) > 40


@pytest.mark.parametrize("path,option,kind", NUMERIC, ids=lambda x: x if isinstance(x, str) else None)
def test_numeric_options_refuse_values_outside_their_domain(path, option, kind, capsys):
    parser = build_parser()
    for value in _bad_values(kind):
        with pytest.raises(SystemExit) as ex:
            parser.parse_args([*path, f"{option}={value}"])
        assert ex.value.code == EXIT_USAGE, (option, value)
        line = _one_line_error(capsys)
        assert option in line, line


# ============================================================================ paths
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-bad")
    good = d / "good.h5"
    write(good, list(events.sim.simulate("nu", 2, seed=3, volume=events.Volume(voxel_size_cm=0.6,
                                                                               shape=(384,) * 3))))
    junk = d / "junk.h5"
    junk.write_bytes(b"this is not an HDF5 file" * 40)
    empty = d / "empty.h5"
    write(empty, [events.Event(points=np.zeros((0, 3), np.float32), energy=np.zeros(0, np.float32))])
    folder = d / "folder.h5"
    folder.mkdir()
    a_file = d / "notes.txt"
    a_file.write_text("a file where a folder is expected")
    return {"good": str(good), "junk": str(junk), "empty": str(empty), "folder": str(folder),
            "file": str(a_file), "missing": str(d / "missing.h5"), "nodir": str(d / "no" / "x.h5"),
            "d": d}


CASES = [
    # (argv with {placeholders}, expected exit code, words the message must hold)
    (["simulate", "--n", "1", "--out", "{nodir}"], EXIT_USAGE, "does not exist"),
    (["simulate", "--n", "1", "--out", "{folder}"], EXIT_USAGE, "folder"),
    (["simulate", "--n", "1", "--out", "{file}"], EXIT_USAGE, "extension"),
    (["simulate", "--n", "1", "--out", "{d}/x.h5", "--voxel-size", "0.7"], EXIT_USAGE, "does not divide"),
    (["simulate", "--n", "1", "--out", "{d}/x.h5", "--voxel-size", "0.01"], EXIT_USAGE, "finest"),
    (["convert", "{missing}", "{d}/out.root"], EXIT_BAD_INPUT, "missing.h5"),
    (["convert", "{junk}", "{d}/out.root"], EXIT_BAD_INPUT, "junk.h5"),
    (["convert", "{folder}", "{d}/out.root"], EXIT_BAD_INPUT, "folder"),
    (["convert", "{good}", "{good}"], EXIT_USAGE, "input file"),
    (["convert", "{good}", "{nodir}"], EXIT_USAGE, "does not exist"),
    (["inspect", "{missing}"], EXIT_BAD_INPUT, "missing.h5"),
    (["inspect", "{junk}"], EXIT_BAD_INPUT, "junk.h5"),
    (["inspect", "{good}", "--plots", "{file}"], EXIT_USAGE, "is a file"),
    (["demo", "--out", "{file}"], EXIT_USAGE, "is a file"),
    (["classify", "{missing}"], EXIT_BAD_INPUT, "missing.h5"),
    (["classify", "{junk}"], EXIT_BAD_INPUT, "junk.h5"),
    (["classify", "{good}:7"], EXIT_BAD_INPUT, "out of range"),
    (["classify", "{empty}"], EXIT_BAD_INPUT, "0 points"),
    (["ask", "{missing}", "Where is the vertex?"], EXIT_BAD_INPUT, "missing.h5"),
    (["ask", "{junk}:0", "Where is the vertex?"], EXIT_BAD_INPUT, "junk.h5"),
    (["ask", "{folder}", "Where is the vertex?"], EXIT_BAD_INPUT, "folder"),
    (["ask", "{good}:2", "Where is the vertex?"], EXIT_BAD_INPUT, "out of range"),
    (["ask", "{good}:-3", "Where is the vertex?"], EXIT_BAD_INPUT, "out of range"),
    (["ask", "{empty}", "Where is the vertex?"], EXIT_BAD_INPUT, "0 points"),
    (["ask", "{good}", ""], EXIT_NO_ANSWER, "question is empty"),
    (["ask", "{good}", "   "], EXIT_NO_ANSWER, "question is empty"),
    (["ask", "{good}", "Where?", "--db", "{nodir}"], EXIT_USAGE, "does not exist"),
    (["index", "build", "{missing}", "--out", "{d}/ix"], EXIT_BAD_INPUT, "missing.h5"),
    (["index", "build", "{junk}", "--out", "{d}/ix"], EXIT_BAD_INPUT, "junk.h5"),
    (["index", "build", "{d}/nothing-*.h5", "--out", "{d}/ix"], EXIT_BAD_INPUT, "no event file matches"),
    (["index", "build", "--out", "{d}/ix"], EXIT_USAGE, "--simulate"),
    (["index", "build", "{good}", "--out", "{file}"], EXIT_USAGE, "is a file"),
    (["index", "search", "--event", "{junk}"], EXIT_BAD_INPUT, "junk.h5"),
    (["index", "search", "--event", "{good}:5"], EXIT_BAD_INPUT, "out of range"),
    (["index", "search", "{d}/no-index", "--text", "x"], EXIT_BAD_INPUT, "larsight index build"),
    (["index", "search", "--text", "x", "--event", "{good}"], EXIT_USAGE, "exactly one"),
    (["pretrain", "--files", "{d}/nothing-*.h5", "--run-dir", "{d}/pt"], EXIT_BAD_INPUT, "no event file"),
    (["pretrain", "--run-dir", "{file}"], EXIT_USAGE, "is a file"),
    (["finetune", "--task", "semantic", "--init", "{missing}"], EXIT_BAD_INPUT, "missing.h5"),
    (["finetune", "--task", "semantic", "--files", "{missing}"], EXIT_BAD_INPUT, "missing.h5"),
    (["align", "--stage", "2", "--init", "{d}/no-vlm"], EXIT_BAD_INPUT, "no-vlm"),
    (["align", "--stage", "1", "--encoder", "{missing}"], EXIT_BAD_INPUT, "missing.h5"),
    (["eval", "encoder", "{missing}"], EXIT_BAD_INPUT, "missing.h5"),
    (["eval", "compare", "{d}/run-a", "{d}/run-b"], EXIT_BAD_INPUT, "run-a"),
    (["eval", "agent", "--suite", "{d}/no-suite"], EXIT_USAGE, "no-suite"),
    (["ui", "--db", "{nodir}"], EXIT_USAGE, "does not exist"),
    (["ui", "--run-dir", "{file}"], EXIT_USAGE, "is a file"),
]


@pytest.mark.parametrize("argv,code,words", CASES, ids=lambda x: " ".join(x)[:60] if isinstance(x, list) else None)
def test_bad_paths_and_inputs_end_in_one_line_and_their_exit_code(files, argv, code, words, capsys):
    args = [a.format(**files) for a in argv]
    assert main(args) == code
    line = _one_line_error(capsys)
    assert line.startswith(f"larsight {args[0]}") and words in line, line
