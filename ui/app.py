"""``larsight ui``: the Gradio chat with an event display (offline, on the shipped weights).

    from larsight.ui.app import build_app, launch
    demo = build_app(brain="rules")                 # gr.Blocks (nothing started yet)
    launch(demo, host="127.0.0.1", port=7860)       # blocks; prevent_thread_lock=True returns

The screen, left to right:

- **Event**: simulate one (mode, seed, event number), upload a PILArNet-M ``.h5`` / ``.root``
  file (size limit; a bad file gives a clear message, never a traceback), or pick one from the
  event index by id / key. The interactive plotly 3D view (colour by energy, semantic class,
  particle, interaction or PID; reconstruction overlays: vertex, particle starts, directions,
  Michel electrons) and the XZ / YZ projections sit under it.
- **Chat**: the agent's steps appear as collapsible thoughts (tool, why, inputs, outputs,
  duration; a spinner while a tool runs), then the answer streams in with its claim-validation
  table and the class probabilities. Follow-ups keep the thread (one per browser session).
- **Similar events**: a gallery of the index's nearest events to the one shown, or of a text
  search; clicking one loads it. Without an index the app says how to build one, or builds a
  small one from simulated events with a progress bar.

Sessions: each browser session has its own ``gr.State`` (a uuid thread id, its event, its
gallery) and all sessions share one ``agent.Agent`` (its SQLite checkpointer keys threads by
id). Gradio's queue runs up to ``concurrency`` questions at once; API names (``/simulate``,
``/load_file``, ``/load_from_index``, ``/ask``, ``/similar``, ``/search``, ``/new_chat``, ``/feedback``,
``/feedback_thumbs``, ``/feedback_recent``) make the app scriptable with ``gradio_client``.

Expert feedback (``app_feedback``): thumbs on every answer, and a panel to mark each claim of an
answer right, wrong or "should be" a corrected value or class, with a comment; stored with the
answer's full context in the feedback database (``agent.feedback``, beside the conversations),
and a table of recent feedback with its status.

Untrusted input: an upload is parsed by the bounded reader (a worker process with a time limit
and a memory cap; at most ``UPLOAD_CONCURRENCY`` at once), so a corrupt or pathological file
gets a clear message within seconds and cannot pin a server thread. Only files that read are
kept (``app_uploads.UploadStore``, capped in total size); Gradio's copy is deleted once used.
Messages never show the server's paths (``app_public.Redactor``).

Modules: this one assembles the app; ``app_layout`` (the sections and their wiring),
``app_handlers`` (what each button does), ``app_events`` (where events come from),
``app_chat`` (the conversation), ``app_display`` (figures), ``app_feedback`` (expert feedback).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from larsight import events  # noqa: E402
from larsight.agent import Agent  # noqa: E402
from larsight.events.model import Event  # noqa: E402
from larsight.tools import engine  # noqa: E402
from larsight.ui.app_events import MAX_UPLOAD_MB, index_info  # noqa: E402
from larsight.ui.app_feedback import FeedbackHandlers, feedback_section, wire_feedback  # noqa: E402
from larsight.ui.app_handlers import AppHandlers, empty_thumb, new_session  # noqa: E402
from larsight.ui.app_layout import (EXAMPLE_QUESTIONS, chat_section, display_section,  # noqa: E402
                                    event_section, similar_section, wire)
from larsight.ui.app_public import Redactor  # noqa: E402
from larsight.ui.app_uploads import UploadStore  # noqa: E402

__all__ = ["build_app", "launch", "new_session", "warm_up", "EXAMPLE_QUESTIONS", "DEFAULT_PORT",
           "empty_thumb"]

DEFAULT_PORT = 7860
SMALL_INDEX_EVENTS = 64
UPLOAD_STORE_FACTOR = 5
"""Kept uploads may take this many times the largest upload (unless told otherwise)."""
GRADIO_CACHE_SWEEP = (900, 3600)
"""Every 15 minutes Gradio deletes the files it cached for this app that are over an hour old
(uploads that were never loaded); its default keeps them forever."""

CSS = """
#event-status {min-height: 3em}
#chat .message {font-size: 0.95em}
#chat table td:nth-child(2), #chat table td:nth-child(4) {white-space: nowrap}
"""


def default_run_dir() -> Path:
    return Path(os.environ.get("LARSIGHT_RUNS", "runs")) / "ui"


def _reader_warm_file(run_dir: Path) -> Path:
    """A two-point event file the upload reader is started on (see ``AppHandlers.warm_reader``)."""
    path = run_dir / "reader-warm.h5"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        events.write(path, [Event(points=np.array([[1, 1, 1], [2, 2, 2]], np.float32),
                                  energy=np.ones(2, np.float32))])
    return path


def build_app(brain: Optional[str] = "vlm", *, agent: Any = None, index: Optional[str | os.PathLike] = None,
              db: Optional[str | os.PathLike] = None, run_dir: Optional[str | os.PathLike] = None,
              max_upload_mb: float = MAX_UPLOAD_MB, concurrency: int = 4,
              small_index_events: int = SMALL_INDEX_EVENTS,
              upload_store_mb: Optional[float] = None,
              feedback_db: Optional[str | os.PathLike] = None) -> gr.Blocks:
    """The app as ``gr.Blocks`` (queue set up; start it with ``launch``).

    ``brain``: the agent's reasoning back-end (``vlm``, ``rules``, ``openai``); ``agent``: an
    ``agent.Agent`` to use instead (tests). ``index``: event index folder (default
    ``$LARSIGHT_INDEX`` / ``~/.local/share/larsight/index``). ``db``: SQLite file of the
    conversations (default ``agent.default_db_path()``). ``run_dir``: where kept uploads and
    tool outputs go (default ``runs/ui``); ``upload_store_mb``: the disk kept uploads may take
    (default five times ``max_upload_mb``; the least recently used go first). ``feedback_db``:
    where experts' feedback goes (a SQLite file or SQLAlchemy URL; default ``feedback.sqlite``
    beside the conversations, see ``agent.feedback``).
    ``concurrency``: questions answered at once."""
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir()
    index_path = str(Path(index).expanduser()) if index else None
    if agent is None:
        agent = Agent(brain, db=db, run_dir=run_dir / "agent", index=index_path)
    brain_name = getattr(agent, "brain_name", str(brain))
    store = UploadStore(run_dir / "uploads", upload_store_mb or UPLOAD_STORE_FACTOR * max_upload_mb)
    public = Redactor([(store.folder, "uploads"), (Path.cwd(), "."), (Path.home(), "~")])
    h = AppHandlers(agent, index_path, store, max_upload_mb, small_index_events, public,
                    warm_file=_reader_warm_file(run_dir))
    h.warm_reader()
    fh = _feedback_handlers(agent, feedback_db)
    h.feedback = fh
    has_index, index_md = index_info(index_path)

    with gr.Blocks(title="larsight", analytics_enabled=False, fill_width=True,
                   delete_cache=GRADIO_CACHE_SWEEP) as demo:
        state = gr.State(None)
        gr.Markdown("## larsight: ask a liquid-argon TPC event\n"
                    f"Every physics claim of an answer is checked against the tools' measurements. "
                    f"Brain: **{brain_name}**.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=420):
                ev = event_section(max_upload_mb, small_index_events, has_index, h.public.text(index_md))
                disp = display_section()
            with gr.Column(scale=6, min_width=420):
                chat = chat_section()
                fb = feedback_section() if fh is not None else None
        sim = similar_section()
        wire(h, state, ev, disp, chat, sim, concurrency)
        if fb is not None:
            wire_feedback(fh, state, chat, fb)

    demo.queue(default_concurrency_limit=concurrency, max_size=128)
    demo.larsight_agent = agent
    demo.larsight_uploads = store
    demo.larsight_feedback = fh.store if fh is not None else None
    return demo


def _feedback_handlers(agent: Any, target: Optional[str | os.PathLike]) -> Optional[FeedbackHandlers]:
    """The feedback store beside the agent's conversations (or at ``target``); None, with a
    message, when it cannot be opened: the chat then runs without feedback controls."""
    from larsight.agent.feedback import FeedbackDatabaseError, FeedbackStore

    db_path = getattr(agent, "db_path", None)
    if target is None and db_path is not None:
        target = Path(db_path).parent / "feedback.sqlite"
    try:
        return FeedbackHandlers(FeedbackStore(target), agent)
    except FeedbackDatabaseError as e:
        print(f"larsight ui: expert feedback is off: {e}")
        return None


def theme():
    return gr.themes.Soft(primary_hue="indigo")


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: Optional[int] = DEFAULT_PORT,
           max_upload_mb: float = MAX_UPLOAD_MB, prevent_thread_lock: bool = False, quiet: bool = False,
           **kw):
    """Start the server (blocks unless ``prevent_thread_lock``). Offline: no share link, no
    analytics, no server-side rendering. Returns what ``Blocks.launch`` returns."""
    return demo.launch(server_name=host, server_port=port, share=False, max_file_size=f"{int(max_upload_mb)}mb",
                       prevent_thread_lock=prevent_thread_lock, quiet=quiet, show_error=True,
                       ssr_mode=False, theme=theme(), css=CSS, footer_links=["api", "settings"],
                       run_history=False, **kw)


def warm_up(agent) -> threading.Thread:
    """Load the models in the background (the first question is then fast)."""
    def run():
        try:
            engine.get_model()
            if getattr(agent, "brain_name", "") == "vlm":
                _ = agent.brain.vlm
        except Exception as e:  # noqa: BLE001 - the first question will report it
            print(f"larsight ui: warm-up failed: {type(e).__name__}: {e}")

    t = threading.Thread(target=run, name="larsight-warm-up", daemon=True)
    t.start()
    return t
