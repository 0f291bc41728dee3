"""What the chat app does when a button is pressed: one method per event listener.

``AppHandlers`` holds what every session shares (the agent, the index path, the upload store)
and nothing of any one session: a session's state (its thread id, its event, its gallery)
comes in as ``gr.State`` and goes back out. Everything shown goes through ``Redactor``, so that
no message shows where the server keeps its files; problems become a message in the event
status or the chat, never a traceback.
"""
from __future__ import annotations

import os
import threading
import uuid
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any, Optional

import gradio as gr
import numpy as np
from gradio.utils import get_upload_folder

from larsight.agent import Answer
from larsight.events import formats
from larsight.ui.app_chat import answer_summary, chat_turn
from larsight.ui.app_display import (caption, event_figure, hits_markdown, projections_figure,
                                     thumbnail)
from larsight.ui.app_events import (EventSourceError, LoadedEvent, build_small_index, index_info,
                                    load_from_index, load_ref, load_upload, search_index,
                                    similar_events, simulate_event)
from larsight.ui.app_public import Redactor
from larsight.ui.app_uploads import UploadStore

__all__ = ["AppHandlers", "new_session", "READER_NICE"]

READER_NICE = 10
"""Niceness of the upload reader processes started by ``AppHandlers.warm_reader``."""


def new_session() -> dict:
    """A browser session's state: its own conversation thread, event and gallery."""
    return {"thread": f"ui-{uuid.uuid4().hex}", "ref": None, "source": "", "hits": []}


def _session(state: Optional[dict]) -> dict:
    return dict(state) if state else new_session()


def empty_thumb(size: int = 160) -> np.ndarray:
    return np.full((size, size, 3), 235, np.uint8)


class AppHandlers:
    """The app's event listeners (bound methods; Gradio reads their signatures)."""

    def __init__(self, agent: Any, index_path: Optional[str], store: UploadStore, max_upload_mb: float,
                 small_index_events: int, redactor: Optional[Redactor] = None,
                 warm_file: Optional[Path] = None):
        self.agent = agent
        self.index_path = index_path
        self.store = store
        self.max_upload_mb = max_upload_mb
        self.small_index_events = small_index_events
        self.public = redactor or Redactor()
        self.warm_file = warm_file
        self.feedback = None   # ui.app_feedback.FeedbackHandlers: records each answer for expert feedback
        # Gradio names an upload by its content, so two sessions sending the same file share
        # one path: it is deleted only when no handler uses it, and a path read before is
        # served from its kept copy
        self._uploads_lock = threading.Lock()
        self._in_use: Counter = Counter()
        self._kept: OrderedDict = OrderedDict()

    def warm_reader(self) -> Optional[threading.Thread]:
        """Start a reader process in the background when none is idle (at start, and after an
        upload, which may have had its reader killed): the next upload then does not wait
        seconds for one to import its libraries, and a bad file's message stays within 10 s."""
        if self.warm_file is None:
            return None

        def run():
            try:
                # the reader inherits this thread's priority: parsing a file (a hostile one
                # spins a core for seconds) yields to the conversations
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), READER_NICE)
            except (AttributeError, OSError):   # not Linux: the reader runs at normal priority
                pass
            try:
                formats.count_untrusted(self.warm_file, timeout_s=30)
            except Exception as e:  # noqa: BLE001 - the next upload starts its own reader
                print(f"larsight ui: could not start a file reader: {type(e).__name__}: {e}")

        t = threading.Thread(target=run, name="larsight-warm-reader", daemon=True)
        t.start()
        return t

    # ------------------------------------------------------------------ helpers
    def error_md(self, err: Exception) -> str:
        return f"⚠ **Error:** {self.public.text(str(err))}"

    def show(self, loaded: LoadedEvent, state: dict, color: str, overlay: bool, labels: str):
        fig3d, note = event_figure(loaded.event, color_by=color, overlay=overlay, labels=labels)
        title = fig3d.layout.title.text if fig3d.layout.title else None
        if title:
            fig3d.update_layout(title_text=self.public.text(title))
        fig2d = projections_figure(loaded.event, overlay=overlay)
        state = {**state, "ref": loaded.ref, "source": loaded.source}
        md = loaded.summary() + (f"\n\n_{note}_" if note else "")
        return self.public.text(md), fig3d, fig2d, state

    def keep(self, state: dict, err: Exception):
        gr.Warning(self.public.text(str(err)))
        return self.error_md(err), gr.skip(), gr.skip(), state

    def _load_ref(self, ref: str, source: Optional[str]) -> LoadedEvent:
        try:
            return load_ref(ref, source)
        except EventSourceError:
            if ref.startswith(str(self.store.folder)):
                raise EventSourceError("that uploaded file is no longer kept on the server "
                                       "(older uploads make room for newer ones): upload it again") from None
            raise

    # ------------------------------------------------------------------ the event
    def on_simulate(self, mode, seed, number, color, overlay, labels, state, progress=gr.Progress()):
        state = _session(state)
        progress(0.1, desc="simulating")
        try:
            loaded = simulate_event(mode, seed, number)
            progress(0.5, desc="reconstructing for the display")
            return self.show(loaded, state, color, overlay, labels)
        except EventSourceError as e:
            return self.keep(state, e)

    def on_upload(self, file, number, color, overlay, labels, state, progress=gr.Progress()):
        state = _session(state)
        progress(0.1, desc="reading the file")
        path = file if isinstance(file, (str, os.PathLike)) or file is None else getattr(file, "name", None)
        key = str(path) if path else None
        with self._uploads_lock:
            kept = self._kept.get(key)
            if key:
                self._in_use[key] += 1
        src = kept if kept is not None and Path(kept).exists() else path
        try:
            loaded, _n = load_upload(src, number, max_mb=self.max_upload_mb, store=self.store,
                                     name=Path(path).name if path else None)
        except EventSourceError as e:
            return self.keep(state, e)
        finally:
            self._release_upload(key)
        with self._uploads_lock:
            self._kept[key] = loaded.ref.rsplit(":", 1)[0]
            while len(self._kept) > 1024:
                self._kept.popitem(last=False)
        progress(0.5, desc="reconstructing for the display")
        return self.show(loaded, state, color, overlay, labels)

    def _release_upload(self, key: Optional[str]) -> None:
        """Read (and kept when it reads) or refused: Gradio's copy goes once no handler uses it."""
        if key:
            with self._uploads_lock:
                self._in_use[key] -= 1
                if self._in_use[key] <= 0:
                    del self._in_use[key]
                    UploadStore.forget_source(key, get_upload_folder())
        self.warm_reader()

    def on_index_load(self, id_or_key, color, overlay, labels, state, progress=gr.Progress()):
        state = _session(state)
        progress(0.1, desc="loading the event")
        try:
            return self.show(load_from_index(id_or_key, self.index_path), state, color, overlay, labels)
        except EventSourceError as e:
            return self.keep(state, e)

    def on_redraw(self, color, overlay, labels, state):
        state = _session(state)
        if not state.get("ref"):
            return gr.skip(), gr.skip()
        try:
            loaded = self._load_ref(state["ref"], state.get("source"))
        except EventSourceError as e:
            gr.Warning(self.public.text(str(e)))
            return gr.skip(), gr.skip()
        fig3d, note = event_figure(loaded.event, color_by=color, overlay=overlay, labels=labels)
        if fig3d.layout.title and fig3d.layout.title.text:
            fig3d.update_layout(title_text=self.public.text(fig3d.layout.title.text))
        if note:
            gr.Info(note)
        return fig3d, projections_figure(loaded.event, overlay=overlay)

    # ------------------------------------------------------------------ similar events
    def gallery_items(self, result, progress) -> list:
        items = []
        for i, hit in enumerate(result.hits):
            progress((i + 1) / max(1, len(result.hits)), desc=f"drawing event {i + 1} of {len(result.hits)}")
            try:
                img = thumbnail(hit.load())
            except Exception:  # noqa: BLE001 - a hit whose event is gone still gets a tile
                img = empty_thumb()
            items.append((img, caption(hit)))
        return items

    def _hits_note(self, res, head: str) -> str:
        return self.public.text(f"{head} ({res.n_indexed} indexed). Click one to load it.\n\n{hits_markdown(res)}")

    def on_similar(self, k, state, progress=gr.Progress()):
        state = _session(state)
        if not state.get("ref"):
            return [], "Load an event first (simulate, upload or pick one).", state
        progress(0.0, desc="searching the index")
        try:
            res = similar_events(state["ref"], int(k), self.index_path)
        except Exception as e:  # noqa: BLE001 - no index, model mismatch, a file gone: say so
            return [], self.error_md(e), state
        state = {**state, "hits": res.keys}
        note = self._hits_note(res, f"{len(res.hits)} events nearest to `{state['ref']}`")
        return self.gallery_items(res, progress), note, state

    def on_search(self, text, k, state, progress=gr.Progress()):
        state = _session(state)
        progress(0.0, desc="embedding the text (the language model loads on first use)")
        try:
            res = search_index(text, int(k), self.index_path)
        except Exception as e:  # noqa: BLE001
            return [], self.error_md(e), state
        state = {**state, "hits": res.keys}
        note = self._hits_note(res, f"{len(res.hits)} events matching “{res.query}”")
        return self.gallery_items(res, progress), note, state

    def on_pick(self, color, overlay, labels, state, evt: gr.SelectData):
        state = _session(state)
        hits = state.get("hits") or []
        if evt is None or evt.index is None or not (0 <= int(evt.index) < len(hits)):
            return self.keep(state, EventSourceError("that gallery item is no longer available: search again"))
        key = hits[int(evt.index)]
        try:
            loaded = self._load_ref(key, f"similar event #{int(evt.index) + 1}")
            return self.show(loaded, state, color, overlay, labels)
        except EventSourceError as e:
            return self.keep(state, e)

    def on_build_index(self, progress=gr.Progress(track_tqdm=True)):
        try:
            report = build_small_index(self.index_path, n=self.small_index_events,
                                       progress=lambda f, t: progress(f, desc=t))
        except Exception as e:  # noqa: BLE001
            return self.error_md(e), gr.update()
        ok, md = index_info(self.index_path)
        return self.public.text(f"{md}\n\n{report}"), gr.update(visible=not ok)

    # ------------------------------------------------------------------ the chat
    def on_ask(self, message, history, state):
        state = _session(state)
        message = (message or "").strip()
        if not message:
            yield history, state, gr.skip(), gr.skip(), gr.skip()
            return
        final: Optional[Answer] = None
        msgs = history
        for msgs, answer in chat_turn(self.agent, state.get("ref"), message, state["thread"], history):
            final = answer
            yield self.public.value(msgs), state, gr.skip(), gr.skip(), ""
        if final is not None:
            if self.feedback is not None:
                state = self.feedback.remember(final, state, len(msgs) - 1)
            probs = final.class_probabilities or None
            yield (self.public.value(msgs), state, (probs if probs else gr.skip()),
                   self.public.value(answer_summary(final)), "")

    def on_new_chat(self, state):
        state = {**_session(state), "thread": f"ui-{uuid.uuid4().hex}", "answers": [], "last_answer": None}
        return [], state, None, None
