"""The chat app's screen, one function per section, and the wiring of its buttons.

Each section function creates its components inside the current ``gr.Blocks`` context and
returns them in a ``SimpleNamespace``; ``wire`` connects them to ``AppHandlers`` with the API
names that make the app scriptable (``/simulate``, ``/load_file``, ``/load_from_index``,
``/ask``, ``/similar``, ``/search``, ``/new_chat``).
"""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from larsight.ui.app_display import COLOR_CHOICES, HEIGHT_2D, HEIGHT_3D, empty_figure
from larsight.ui.app_events import SIM_MODES
from larsight.ui.app_handlers import AppHandlers

__all__ = ["EXAMPLE_QUESTIONS", "GALLERY_K", "UPLOAD_CONCURRENCY", "event_section",
           "display_section", "chat_section", "similar_section", "wire"]

EXAMPLE_QUESTIONS = ("Classify this event and explain why.", "Where is the vertex?",
                     "How many protons are there?", "List the particles with their energies.",
                     "Describe this event.", "Find 5 events like this one.")
GALLERY_K = 6
UPLOAD_CONCURRENCY = 2
"""Uploads parsed at once (each in a reader process): hostile files cannot take every core."""


def event_section(max_upload_mb: float, small_index_events: int, has_index: bool,
                  index_md: str) -> SimpleNamespace:
    """Where the event comes from: the Simulate, Upload and From-the-index tabs."""
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
                             file_types=[".h5", ".hdf5", ".root"], type="filepath", elem_id="upload")
            with gr.Row():
                file_index = gr.Number(value=0, precision=0, label="event index in the file")
                upload_btn = gr.Button("Load event", elem_id="upload-btn")
        with gr.Tab("From the index", id="tab-index"):
            index_status = gr.Markdown(index_md, elem_id="index-status")
            with gr.Row():
                id_or_key = gr.Textbox(label="event id or key", scale=3,
                                       placeholder="12  or  sim:nu:seed=0:voxel=0.6:index=12")
                id_btn = gr.Button("Load", scale=1)
            build_btn = gr.Button(f"Build a small index ({small_index_events} simulated events)",
                                  visible=not has_index, elem_id="build-index-btn")
    status = gr.Markdown("No event yet: simulate one, upload a file or pick one from the index.",
                         elem_id="event-status")
    return SimpleNamespace(mode=mode, seed=seed, number=number, sim_btn=sim_btn, upload=upload,
                           file_index=file_index, upload_btn=upload_btn, index_status=index_status,
                           id_or_key=id_or_key, id_btn=id_btn, build_btn=build_btn, status=status)


def display_section() -> SimpleNamespace:
    """The 3D view and the projections, with the colour, label and overlay choices."""
    with gr.Column(elem_id="event-display"):
        with gr.Row():
            color = gr.Radio(list(COLOR_CHOICES), value="energy", label="colour by", scale=3)
            labels = gr.Radio([("reconstruction", "reco"), ("truth", "truth")], value="reco",
                              label="labels", scale=2)
            overlay = gr.Checkbox(value=True, label="reco overlays", scale=1, min_width=150)
        plot3d = gr.Plot(empty_figure("simulate, upload or pick an event", HEIGHT_3D),
                         label="3D event display", elem_id="event-3d")
        plot2d = gr.Plot(empty_figure("XZ / YZ projections", HEIGHT_2D),
                         label="XZ and YZ projections", elem_id="event-2d")
    return SimpleNamespace(color=color, labels=labels, overlay=overlay, plot3d=plot3d, plot2d=plot2d)


def chat_section() -> SimpleNamespace:
    """The conversation, the question box, the class probabilities and the answer's JSON."""
    chatbot = gr.Chatbot(label="Chat with the agent", height=620, elem_id="chat",
                         placeholder="Ask about the event: its class and why, the vertex, "
                                     "the particles, similar events…",
                         buttons=["copy"], feedback_options=("Like", "Dislike"))
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
    return SimpleNamespace(chatbot=chatbot, question=question, ask_btn=ask_btn, new_btn=new_btn,
                           probs=probs, answer_json=answer_json)


def similar_section() -> SimpleNamespace:
    """The gallery of similar events and the text search."""
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
    return SimpleNamespace(k=k, similar_btn=similar_btn, search_text=search_text,
                           search_btn=search_btn, gallery=gallery, gallery_status=gallery_status)


def wire(h: AppHandlers, state, ev: SimpleNamespace, disp: SimpleNamespace, chat: SimpleNamespace,
         sim: SimpleNamespace, concurrency: int) -> None:
    """Connect the components to the handlers (inside the ``gr.Blocks`` context)."""
    view = [disp.color, disp.overlay, disp.labels]
    shown = [ev.status, disp.plot3d, disp.plot2d, state]
    ev.sim_btn.click(h.on_simulate, [ev.mode, ev.seed, ev.number, *view, state], shown, api_name="simulate")
    ev.upload_btn.click(h.on_upload, [ev.upload, ev.file_index, *view, state], shown, api_name="load_file",
                        concurrency_limit=UPLOAD_CONCURRENCY, concurrency_id="upload")
    ev.id_btn.click(h.on_index_load, [ev.id_or_key, *view, state], shown, api_name="load_from_index")
    ev.id_or_key.submit(h.on_index_load, [ev.id_or_key, *view, state], shown, api_name=False)
    for comp in view:
        comp.change(h.on_redraw, [*view, state], [disp.plot3d, disp.plot2d], api_name=False,
                    show_progress="minimal")
    ask_in = [chat.question, chat.chatbot, state]
    ask_out = [chat.chatbot, state, chat.probs, chat.answer_json, chat.question]
    ask_kw = dict(concurrency_limit=concurrency, concurrency_id="ask", show_progress="minimal")
    chat.ask_btn.click(h.on_ask, ask_in, ask_out, api_name="ask", **ask_kw)
    chat.question.submit(h.on_ask, ask_in, ask_out, api_name=False, **ask_kw)
    chat.new_btn.click(h.on_new_chat, [state], [chat.chatbot, state, chat.probs, chat.answer_json],
                       api_name="new_chat")
    found = [sim.gallery, sim.gallery_status, state]
    sim.similar_btn.click(h.on_similar, [sim.k, state], found, api_name="similar")
    sim.search_btn.click(h.on_search, [sim.search_text, sim.k, state], found, api_name="search")
    sim.search_text.submit(h.on_search, [sim.search_text, sim.k, state], found, api_name=False)
    sim.gallery.select(h.on_pick, [*view, state], shown, api_name=False)
    ev.build_btn.click(h.on_build_index, None, [ev.index_status, ev.build_btn], api_name=False,
                       concurrency_limit=1, concurrency_id="build-index")
