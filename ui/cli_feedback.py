"""``larsight feedback``: experts' feedback on the agent's answers, reviewed and exported.

    larsight feedback add review.json                 # scripted review: JSON in (file or -)
    larsight feedback list --status new --limit 20    # the newest first
    larsight feedback show 42                         # one item with its answer and context
    larsight feedback mark 42 43 --status reviewed    # review it
    larsight feedback export --format dpo --out prefs.jsonl   # chosen / rejected pairs

The database: ``--db`` (a SQLite file or any SQLAlchemy URL, e.g. a lab's PostgreSQL server),
else ``$LARSIGHT_FEEDBACK_DB``, else ``feedback.sqlite`` beside the conversation checkpointer
(``~/.cache/larsight/``). ``add`` reads one JSON object, a list of them, or JSON lines; each is
``{"answer_id" or "answer", "verdict", "corrections", "comment", "author", "better_than"}``
(``larsight.agent.feedback.FeedbackIn``). A batch is stored whole or not at all.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from larsight.ui.cli_args import BadInputError, count
from larsight.ui.cli_inputs import output_file

__all__ = ["add_feedback", "cmd_feedback_add", "cmd_feedback_list", "cmd_feedback_show",
           "cmd_feedback_mark", "cmd_feedback_export"]

STATUSES = ("new", "reviewed", "exported", "used-in-training")
MAX_INPUT_MB = 64
DB_HELP = ("feedback database: a SQLite file or a SQLAlchemy URL (default: $LARSIGHT_FEEDBACK_DB, else "
           "feedback.sqlite beside the conversations, ~/.cache/larsight/)")


def _store(args, must_exist: bool = True):
    from larsight.agent.feedback import FeedbackStore, FeedbackDatabaseError, default_feedback_target

    target = args.db or default_feedback_target()
    if "://" not in target:
        p = Path(target).expanduser()
        if p.is_dir():
            raise BadInputError(f"--db {target} is a folder: give the database file")
        if must_exist and not p.exists():
            raise BadInputError(f"no feedback database at {target} (nothing recorded yet; `larsight feedback "
                                f"add` or the chat's feedback buttons make it)")
    try:
        return FeedbackStore(target)
    except FeedbackDatabaseError as e:
        raise BadInputError(str(e)) from None


def _bad_input(fn):
    """FeedbackInputError / FeedbackDatabaseError -> exit 3 with their one-line message."""
    def run(args) -> int:
        from larsight.agent.feedback import FeedbackDatabaseError, FeedbackInputError

        try:
            return fn(args)
        except (FeedbackInputError, FeedbackDatabaseError) as e:
            raise BadInputError(str(e)) from None
    run.__name__ = fn.__name__
    return run


def read_items(text: str, name: str) -> list:
    """Feedback items from JSON text: one object, a list, or JSON lines (BadInputError naming
    the line that does not read)."""
    stripped = text.strip()
    if not stripped:
        raise BadInputError(f"{name}: empty input (expected JSON feedback)")
    try:
        data = json.loads(stripped)
        return data if isinstance(data, list) else [data]
    except json.JSONDecodeError as whole:
        lines = [x for x in stripped.splitlines() if x.strip()]
        if len(lines) < 2:
            raise BadInputError(f"{name}: not JSON ({whole.msg} at line {whole.lineno} column {whole.colno})") from None
    items = []
    for n, line in enumerate(stripped.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise BadInputError(f"{name} line {n}: not JSON ({e.msg} at column {e.colno}); nothing was stored") from None
    return items


@_bad_input
def cmd_feedback_add(args) -> int:
    if args.file in (None, "-"):
        text, name = sys.stdin.read(), "standard input"
    else:
        p = Path(args.file).expanduser()
        if not p.is_file():
            raise BadInputError(f"{args.file}: no such file" if not p.exists() else f"{args.file} is a folder")
        if p.stat().st_size > MAX_INPUT_MB * 1e6:
            raise BadInputError(f"{args.file}: larger than {MAX_INPUT_MB} MB")
        try:
            text = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as e:
            raise BadInputError(f"{args.file}: cannot be read as UTF-8 text ({type(e).__name__})") from None
        name = args.file
    items = read_items(text, name)
    if args.author:
        items = [{**it, "author": it.get("author") or args.author} if isinstance(it, dict) else it for it in items]
    with _store(args, must_exist=False) as store:
        ids = store.add_many(items, source="cli")
    print(f"stored {len(ids)} feedback item(s) in {store.where}: " + ", ".join(f"#{i}" for i in ids))
    return 0


def _cut(text: str, n: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[:n - 1] + "…"


@_bad_input
def cmd_feedback_list(args) -> int:
    with _store(args) as store:
        rows = store.list(status=args.status, limit=args.limit, author=args.author)
        counts = store.counts()
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=1))
        return 0
    print("feedback: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f"  ({store.where})")
    if not rows:
        print("(no feedback" + (f" with status {args.status}" if args.status else "") + ")")
        return 0
    print(f"{'id':>6}  {'created (UTC)':16}  {'status':16} {'verdict':7} {'fixes':>5}  {'author':12} question / comment")
    for r in rows:
        note = _cut(r.question, 50) + (f"  — {_cut(r.comment, 40)}" if r.comment else "")
        print(f"{r.id:>6}  {r.created:%Y-%m-%d %H:%M}  {r.status:16} {r.verdict or '-':7} {r.n_corrections:>5}  "
              f"{_cut(r.author, 12) or '-':12} {note}")
    return 0


def _show_text(item) -> str:
    a = item.answer
    lines = [f"feedback #{item.id}  status {item.status}  verdict {item.verdict or '-'}  by {item.author or '-'} "
             f"({item.source})  {item.created:%Y-%m-%d %H:%M:%S} UTC",
             f"answer {item.answer_id}  event {a.event or '-'}  brain {a.brain or '-'}",
             "models: " + (", ".join(f"{k} {v}" for k, v in a.models.items()) or "-"),
             f"Q: {a.question}", f"A: {a.text}", "tools: " + (", ".join(
                 f"{t.get('tool')}({json.dumps(t.get('arguments') or {}, default=str)})" for t in a.tools) or "none")]
    lines.append("claims:")
    lines += _claim_lines(a.claims, {c.claim: c for c in item.corrections if c.of == "answer"})
    if a.first_draft is not None:
        lines.append(f"first draft ({a.first_draft.author}): {a.first_draft.text}")
        lines += _claim_lines(a.first_draft.claims, {c.claim: c for c in item.corrections if c.of == "first_draft"})
    if item.better_than:
        lines.append(f"ranked better than answer {item.better_than}")
    if item.comment:
        lines.append(f"comment: {item.comment}")
    return "\n".join(lines)


def _claim_lines(claims: list[dict], fixes: dict) -> list[str]:
    """A claim table with the expert's marks (and whom each correction blames)."""
    lines = []
    for i, chk in enumerate(claims):
        c = chk.get("claim", chk)
        fix = fixes.get(i)
        mark = "" if fix is None else f"  <- expert: {fix.mark}" + (
            f" {fix.label}" if fix.label else f" {fix.value} {fix.unit or ''}".rstrip() if fix.value is not None else "") \
            + (f" [{fix.blame} error]" if fix.blame else "")
        value = c.get("value") if c.get("value") is not None else c.get("label") or c.get("vector")
        lines.append(f"  [{i}] {c.get('kind')} {c.get('subject') or c.get('particle') or ''} {value if value is not None else ''}"
                     f" {c.get('unit') or ''} ({chk.get('verdict', '?')}){mark}")
    return lines


@_bad_input
def cmd_feedback_show(args) -> int:
    with _store(args) as store:
        item = store.get(args.id)
    print(item.model_dump_json(indent=1) if args.json else _show_text(item))
    return 0


@_bad_input
def cmd_feedback_mark(args) -> int:
    with _store(args) as store:
        n = store.set_status(args.ids, args.status)
    print(f"{n} item(s) now {args.status}")
    return 0


@_bad_input
def cmd_feedback_export(args) -> int:
    out = output_file(args.out)
    with _store(args) as store:
        from larsight.agent.feedback import export

        rep = export(store, out, fmt=args.format, status=args.status, mark_exported=args.mark_exported)
    kinds = ", ".join(f"{n} {k}" for k, n in rep.pairs_by_kind.items())
    what = f"{rep.lines} pair(s)" + (f" ({kinds})" if kinds else "") if args.format == "dpo" else f"{rep.lines} item(s)"
    print(f"wrote {what} from {rep.items} feedback item(s) to {rep.path} in {rep.seconds:.2f} s"
          + (f"; {rep.marked} marked exported" if rep.marked else ""))
    for reason, n in rep.skipped.items():
        print(f"  skipped {n}: {reason}")
    if rep.tool_errors:
        print(f"  {rep.tool_errors} correction(s) of tool errors: not VLM training data (in the jsonl export)")
    return 0


def add_feedback(sub) -> None:
    fb = sub.add_parser("feedback", help="experts' feedback on answers: add, list, show, mark, export "
                        "(preference pairs for fine-tuning)", description=__doc__.split("\n")[0])
    fsub = fb.add_subparsers(dest="action", required=True)
    a = fsub.add_parser("add", help="store feedback from JSON (a file, or - for standard input)")
    a.add_argument("file", nargs="?", default="-", help="JSON object, list or JSON lines (default: stdin)")
    a.add_argument("--author", default=None, help="author of items that name none")
    a.set_defaults(func=cmd_feedback_add)
    ls = fsub.add_parser("list", help="the newest feedback first")
    ls.add_argument("--status", choices=STATUSES, default=None)
    ls.add_argument("--author", default=None)
    ls.add_argument("--limit", type=count(1), default=20, help="rows to show (default 20)")
    ls.add_argument("--json", action="store_true", help="JSON instead of a table")
    ls.set_defaults(func=cmd_feedback_list)
    sh = fsub.add_parser("show", help="one item with its answer, tools, claims and corrections")
    sh.add_argument("id", type=count(1), help="feedback id (from `list`)")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_feedback_show)
    mk = fsub.add_parser("mark", help="set the status of items (review them)")
    mk.add_argument("ids", type=count(1), nargs="+", help="feedback ids")
    mk.add_argument("--status", choices=STATUSES, required=True)
    mk.set_defaults(func=cmd_feedback_mark)
    ex = fsub.add_parser("export", help="write DPO preference pairs or JSON lines (atomic)")
    ex.add_argument("--format", choices=("dpo", "jsonl"), default="dpo")
    ex.add_argument("--out", required=True, help="output file (replaced whole when done)")
    ex.add_argument("--status", choices=STATUSES, default=None, help="only items of this status")
    ex.add_argument("--mark-exported", action="store_true", help="then move new/reviewed items to 'exported'")
    ex.set_defaults(func=cmd_feedback_export)
    for p in (a, ls, sh, mk, ex):
        p.add_argument("--db", default=None, help=DB_HELP)
