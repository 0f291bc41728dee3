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
``/load_file``, ``/load_from_index``, ``/ask``, ``/similar``, ``/search``, ``/new_chat``) make
the app scriptable with ``gradio_client``.
"""
from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from .app_chat import answer_summary, chat_turn  # noqa: E402
from .app_display import (COLOR_CHOICES, HEIGHT_2D, HEIGHT_3D, caption, empty_figure,  # noqa: E402
                          event_figure, hits_markdown, projections_figure, thumbnail)
from .app_events import (MAX_UPLOAD_MB, SIM_MODES, EventSourceError, LoadedEvent,  # noqa: E402
                         build_small_index, index_info, load_from_index, load_ref, load_upload,
                         search_index, similar_events, simulate_event)

__all__ = ["build_app", "launch", "new_session", "EXAMPLE_QUESTIONS", "DEFAULT_PORT"]

DEFAULT_PORT = 7860
EXAMPLE_QUESTIONS = ("Classify this event and explain why.", "Where is the vertex?",
                     "How many protons are there?", "List the particles with their energies.",
                     "Describe this event.", "Find 5 events like this one.")
GALLERY_K = 6
SMALL_INDEX_EVENTS = 64

CSS = """
#event-status {min-height: 3em}
#chat .message {font-size: 0.95em}
#chat table td:nth-child(2), #chat table td:nth-child(4) {white-space: nowrap}
"""


def new_session() -> dict:
    """A browser session's state: its own conversation thread, event and gallery."""
    return {"thread": f"ui-{uuid.uuid4().hex}", "ref": None, "source": "", "hits": []}


def _session(state: Optional[dict]) -> dict:
    return dict(state) if state else new_session()


def _error_md(err: Exception) -> str:
    return f"⚠ **Error:** {err}"


def default_run_dir() -> Path:
    return Path(os.environ.get("LARSIGHT_RUNS", "runs")) / "ui"


def build_app(brain: Optional[str] = "vlm", *, agent: Any = None, index: Optional[str | os.PathLike] = None,
              db: Optional[str | os.PathLike] = None, run_dir: Optional[str | os.PathLike] = None,
              max_upload_mb: float = MAX_UPLOAD_MB, concurrency: int = 4,
              small_index_events: int = SMALL_INDEX_EVENTS) -> gr.Blocks:
    """The app as ``gr.Blocks`` (queue set up; start it with ``launch``).

    ``brain``: the agent's reasoning back-end (``vlm``, ``rules``, ``openai``); ``agent``: an
    ``agent.Agent`` to use instead (tests). ``index``: event index folder (default
    ``$LARSIGHT_INDEX`` / ``~/.local/share/larsight/index``). ``db``: SQLite file of the
    conversations (default ``agent.default_db_path()``). ``run_dir``: where uploads and tool
    outputs go (default ``runs/ui``). ``concurrency``: questions answered at once."""
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir()
    upload_dir = run_dir / "uploads"
    index_path = str(Path(index).expanduser()) if index else None
    if agent is None:
        from larsight.agent import Agent

        agent = Agent(brain, db=db, run_dir=run_dir / "agent", index=index_path)
    brain_name = getattr(agent, "brain_name", str(brain))

    # ------------------------------------------------------------------ handlers
    def show(loaded: LoadedEvent, state: dict, color: str, overlay: bool, labels: str):
        fig3d, note = event_figure(loaded.event, color_by=color, overlay=overlay, labels=labels)
        fig2d = projections_figure(loaded.event, overlay=overlay)
        state = {**state, "ref": loaded.ref, "source": loaded.source}
        md = loaded.summary() + (f"\n\n_{note}_" if note else "")
        return md, fig3d, fig2d, state

    def keep(state: dict, err: Exception):
        gr.Warning(str(err))
        return _error_md(err), gr.skip(), gr.skip(), state

    def on_simulate(mode, seed, number, color, overlay, labels, state, progress=gr.Progress()):
        state = _session(state)
        progress(0.1, desc="simulating")
        try:
            loaded = simulate_event(mode, seed, number)
            progress(0.5, desc="reconstructing for the display")
            return show(loaded, state, color, overlay, labels)
        except EventSourceError as e:
            return keep(state, e)

    def on_upload(file, number, color, overlay, labels, state, progress=gr.Progress()):
        state = _session(state)
        progress(0.1, desc="reading the file")
        try:
            path = file if isinstance(file, (str, os.PathLike)) or file is None else getattr(file, "name", None)
            loaded, _n = load_upload(path, number, upload_dir=upload_dir, max_mb=max_upload_mb,
                                     name=Path(path).name if path else None)
            progress(0.5, desc="reconstructing for the display")
            return show(loaded, state, color, overlay, labels)
        except EventSourceError as e:
            return keep(state, e)

    def on_index_load(id_or_key, color, overlay, labels, state, progress=gr.Progress()):
        state = _session(state)
        progress(0.1, desc="loading the event")
        try:
            return show(load_from_index(id_or_key, index_path), state, color, overlay, labels)
        except EventSourceError as e:
            return keep(state, e)

    def on_redraw(color, overlay, labels, state):
        state = _session(state)
        if not state.get("ref"):
            return gr.skip(), gr.skip()
        try:
            loaded = load_ref(state["ref"], state.get("source"))
        except EventSourceError as e:
            gr.Warning(str(e))
            return gr.skip(), gr.skip()
        fig3d, note = event_figure(loaded.event, color_by=color, overlay=overlay, labels=labels)
        if note:
            gr.Info(note)
        return fig3d, projections_figure(loaded.event, overlay=overlay)

    def gallery_items(result, progress) -> list:
        items = []
        for i, hit in enumerate(result.hits):
            progress((i + 1) / max(1, len(result.hits)), desc=f"drawing event {i + 1} of {len(result.hits)}")
            try:
                img = thumbnail(hit.load())
            except Exception:  # noqa: BLE001 - a hit whose event is gone still gets a tile
                img = empty_thumb()
            items.append((img, caption(hit)))
        return items

    def on_similar(k, state, progress=gr.Progress()):
        state = _session(state)
        if not state.get("ref"):
            return [], "Load an event first (simulate, upload or pick one).", state
        progress(0.0, desc="searching the index")
        try:
            res = similar_events(state["ref"], int(k), index_path)
        except Exception as e:  # noqa: BLE001 - no index, model mismatch: say so
            return [], _error_md(e), state
        state = {**state, "hits": res.keys}
        note = (f"{len(res.hits)} events nearest to `{state['ref']}` "
                f"({res.n_indexed} indexed). Click one to load it.\n\n{hits_markdown(res)}")
        return gallery_items(res, progress), note, state

    def on_search(text, k, state, progress=gr.Progress()):
        state = _session(state)
        progress(0.0, desc="embedding the text (the language model loads on first use)")
        try:
            res = search_index(text, int(k), index_path)
        except Exception as e:  # noqa: BLE001
            return [], _error_md(e), state
        state = {**state, "hits": res.keys}
        note = (f"{len(res.hits)} events matching “{res.query}” ({res.n_indexed} indexed). "
                f"Click one to load it.\n\n{hits_markdown(res)}")
        return gallery_items(res, progress), note, state

    def on_pick(color, overlay, labels, state, evt: gr.SelectData):
        state = _session(state)
        hits = state.get("hits") or []
        if evt is None or evt.index is None or not (0 <= int(evt.index) < len(hits)):
            return keep(state, EventSourceError("that gallery item is no longer available: search again"))
        key = hits[int(evt.index)]
        try:
            return show(load_ref(key, f"similar event #{int(evt.index) + 1}"), state, color, overlay, labels)
        except EventSourceError as e:
            return keep(state, e)

    def on_build_index(progress=gr.Progress(track_tqdm=True)):
        try:
            report = build_small_index(index_path, n=small_index_events,
                                       progress=lambda f, t: progress(f, desc=t))
        except Exception as e:  # noqa: BLE001
            return _error_md(e), gr.update()
        ok, md = index_info(index_path)
        return f"{md}\n\n{report}", gr.update(visible=not ok)

    def on_ask(message, history, state):
        state = _session(state)
        message = (message or "").strip()
        if not message:
            yield history, state, gr.skip(), gr.skip(), gr.skip()
            return
        final = None
        for msgs, answer in chat_turn(agent, state.get("ref"), message, state["thread"], history):
            final = answer
            yield msgs, state, gr.skip(), gr.skip(), ""
        if final is not None:
            probs = final.class_probabilities or None
            yield msgs, state, (probs if probs else gr.skip()), answer_summary(final), ""

    def on_new_chat(state):
        state = {**_session(state), "thread": f"ui-{uuid.uuid4().hex}"}
        return [], state, None, None

    # ------------------------------------------------------------------ layout
    has_index, index_md = index_info(index_path)
    with gr.Blocks(title="larsight", analytics_enabled=False, fill_width=True) as demo:
        state = gr.State(None)
        gr.Markdown("## larsight: ask a liquid-argon TPC event\n"
                    f"Every physics claim of an answer is checked against the tools' measurements. "
                    f"Brain: **{brain_name}**.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=420):
                with gr.Tabs():
                    with gr.Tab("Simulate", id="tab-sim"):
                        with gr.Row():
                            mode = gr.Dropdown([(f"{k}: {v}", k) for k, v in SIM_MODES.items()], value="nu",
                                               label="mode", scale=3)
                            seed = gr.Number(value=0, precision=0, minimum=0, label="seed", scale=1)
                            number = gr.Number(value=0, precision=0, minimum=0, label="event", scale=1)
                        sim_btn = gr.Button("Simulate event", variant="primary", elem_id="simulate-btn")
                    with gr.Tab("Upload", id="tab-upload"):
                        upload = gr.File(label=f"PILArNet-M .h5 or .root file (up to {max_upload_mb:g} MB)",
                                         file_types=[".h5", ".hdf5", ".root"], type="filepath",
                                         elem_id="upload")
                        with gr.Row():
                            file_index = gr.Number(value=0, precision=0, label="event index in the file")
                            upload_btn = gr.Button("Load event", elem_id="upload-btn")
                    with gr.Tab("From the index", id="tab-index"):
                        index_status = gr.Markdown(index_md, elem_id="index-status")
                        with gr.Row():
                            id_or_key = gr.Textbox(label="event id or key", placeholder="12  or  sim:nu:seed=0:voxel=0.6:index=12",
                                                   scale=3)
                            id_btn = gr.Button("Load", scale=1)
                        build_btn = gr.Button(f"Build a small index ({small_index_events} simulated events)",
                                              visible=not has_index, elem_id="build-index-btn")
                status = gr.Markdown("No event yet: simulate one, upload a file or pick one from the index.",
                                     elem_id="event-status")
                with gr.Column(elem_id="event-display"):
                    with gr.Row():
                        color = gr.Radio([c for c in COLOR_CHOICES], value="energy", label="colour by",
                                         scale=3)
                        labels = gr.Radio([("reconstruction", "reco"), ("truth", "truth")], value="reco",
                                          label="labels", scale=2)
                        overlay = gr.Checkbox(value=True, label="reco overlays", scale=1, min_width=150)
                    plot3d = gr.Plot(empty_figure("simulate, upload or pick an event", HEIGHT_3D),
                                     label="3D event display", elem_id="event-3d")
                    plot2d = gr.Plot(empty_figure("XZ / YZ projections", HEIGHT_2D),
                                     label="XZ and YZ projections", elem_id="event-2d")
            with gr.Column(scale=6, min_width=420):
                chatbot = gr.Chatbot(label="Chat with the agent", height=620, elem_id="chat",
                                     placeholder="Ask about the event: its class and why, the vertex, "
                                                 "the particles, similar events…",
                                     buttons=["copy"], feedback_options=None)
                with gr.Row():
                    question = gr.Textbox(placeholder="Ask a question about the event", show_label=False,
                                          scale=5, elem_id="question", submit_btn=False)
                    ask_btn = gr.Button("Ask", variant="primary", scale=1, elem_id="ask-btn")
                    new_btn = gr.Button("New conversation", scale=1, elem_id="new-chat-btn")
                gr.Examples([[q] for q in EXAMPLE_QUESTIONS], inputs=[question], label="Try")
                probs = gr.Label(label="Class probabilities (last classified answer)", num_top_classes=3,
                                 elem_id="class-probs")
                with gr.Accordion("Last answer as JSON", open=False):
                    answer_json = gr.JSON(label="answer", elem_id="answer-json")
        with gr.Row(elem_id="similar-section"):
            with gr.Column(scale=1, min_width=260):
                gr.Markdown("### Similar events")
                k = gr.Slider(2, 12, value=GALLERY_K, step=1, label="how many")
                similar_btn = gr.Button("Find events like this one", elem_id="similar-btn")
                search_text = gr.Textbox(label="or search by text", placeholder="nu_e CC with a gap before the shower")
                search_btn = gr.Button("Search", elem_id="search-btn")
            with gr.Column(scale=4):
                gallery = gr.Gallery(label="nearest events (XZ view; click to load)", columns=6, height=250,
                                     allow_preview=False, elem_id="similar-gallery", object_fit="contain")
                gallery_status = gr.Markdown("", elem_id="gallery-status")

        # ------------------------------------------------------------------ wiring
        view = [color, overlay, labels]
        shown = [status, plot3d, plot2d, state]
        sim_btn.click(on_simulate, [mode, seed, number, *view, state], shown, api_name="simulate")
        upload_btn.click(on_upload, [upload, file_index, *view, state], shown, api_name="load_file")
        id_btn.click(on_index_load, [id_or_key, *view, state], shown, api_name="load_from_index")
        id_or_key.submit(on_index_load, [id_or_key, *view, state], shown, api_name=False)
        for comp in view:
            comp.change(on_redraw, [*view, state], [plot3d, plot2d], api_name=False,
                        show_progress="minimal")
        ask_outputs = [chatbot, state, probs, answer_json, question]
        ask_kw = dict(concurrency_limit=concurrency, concurrency_id="ask", show_progress="minimal")
        ask_btn.click(on_ask, [question, chatbot, state], ask_outputs, api_name="ask", **ask_kw)
        question.submit(on_ask, [question, chatbot, state], ask_outputs, api_name=False, **ask_kw)
        new_btn.click(on_new_chat, [state], [chatbot, state, probs, answer_json], api_name="new_chat")
        similar_btn.click(on_similar, [k, state], [gallery, gallery_status, state], api_name="similar")
        search_btn.click(on_search, [search_text, k, state], [gallery, gallery_status, state], api_name="search")
        search_text.submit(on_search, [search_text, k, state], [gallery, gallery_status, state], api_name=False)
        gallery.select(on_pick, [*view, state], shown, api_name=False)
        build_btn.click(on_build_index, None, [index_status, build_btn], api_name=False,
                        concurrency_limit=1, concurrency_id="build-index")

    demo.queue(default_concurrency_limit=concurrency, max_size=128)
    demo.larsight_agent = agent
    return demo


def empty_thumb(size: int = 160):
    import numpy as np

    return np.full((size, size, 3), 235, np.uint8)


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
            from larsight.tools import engine

            engine.get_model()
            if getattr(agent, "brain_name", "") == "vlm":
                _ = agent.brain.vlm
        except Exception as e:  # noqa: BLE001 - the first question will report it
            print(f"larsight ui: warm-up failed: {type(e).__name__}: {e}")

    t = threading.Thread(target=run, name="larsight-warm-up", daemon=True)
    t.start()
    return t
