"""The chat app given hostile input (issue 18, item 7): corrupt and hanging uploads end in a
message (the bounded reader), nothing is kept of a file that does not read, kept uploads are
capped in total size, Gradio's copy of an upload is deleted once used, and no message shows
the server's paths."""
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from larsight import events  # noqa: E402
from larsight.events.formats import write  # noqa: E402
from larsight.ui.app_events import EventSourceError, load_upload  # noqa: E402
from larsight.ui.app_public import Redactor  # noqa: E402
from larsight.ui.app_uploads import UploadStore  # noqa: E402


@pytest.fixture(scope="module")
def good_h5(tmp_path_factory):
    path = tmp_path_factory.mktemp("abuse") / "good.h5"
    write(path, list(events.sim.simulate("nu", 2, seed=4)))
    return path


# ============================================================================ uploads
def test_a_hanging_upload_ends_in_a_message_and_is_not_kept(hanging_h5, tmp_path):
    store = UploadStore(tmp_path / "kept", cap_mb=100)
    t0 = time.monotonic()
    with pytest.raises(EventSourceError) as err:
        load_upload(hanging_h5, 0, store=store, name="run7.h5", budget_s=3)
    assert time.monotonic() - t0 < 60          # a hang guard, not a speed test
    msg = str(err.value)
    assert "run7.h5" in msg and "PILArNet-M" in msg and "\n" not in msg
    assert str(hanging_h5.parent) not in msg   # the server's temporary folder is not shown
    assert not (tmp_path / "kept").exists() or not any((tmp_path / "kept").iterdir())


def test_a_junk_upload_is_refused_before_anything_is_kept(tmp_path):
    junk = tmp_path / "junk.root"
    junk.write_bytes(os.urandom(5000))
    with pytest.raises(EventSourceError, match="junk.root"):
        load_upload(junk, 0, upload_dir=tmp_path / "kept")
    assert not (tmp_path / "kept").exists()


def test_kept_uploads_are_capped_least_recently_used_first(good_h5, tmp_path):
    size_mb = good_h5.stat().st_size / 2**20
    store = UploadStore(tmp_path / "kept", cap_mb=2.5 * size_mb)
    copies = []
    for i in range(4):                      # four different files of the same size
        p = tmp_path / f"f{i}.h5"
        shutil.copy(good_h5, p)
        with open(p, "ab") as fh:
            fh.write(bytes([i]) * 16)        # another content hash, still a readable file
        copies.append(p)
    kept = []
    for p in copies:
        loaded, n = load_upload(p, 1, store=store, name=p.name)
        assert n == 2 and loaded.event.meta.index == 1
        kept.append(Path(loaded.ref.rsplit(":", 1)[0]))
        time.sleep(0.01)                     # distinct modification times
    assert store.total_bytes() <= store.cap_bytes
    assert [k.exists() for k in kept] == [False, False, True, True]
    # an event whose kept file is gone is still served from the agent's registry
    from larsight.agent.toolset import resolve
    assert len(resolve(f"{kept[0]}:1")) == len(loaded.event)


def test_forget_source_deletes_only_inside_the_cache(tmp_path):
    cache = tmp_path / "gradio"
    (cache / "abc").mkdir(parents=True)
    inside, outside = cache / "abc" / "up.h5", tmp_path / "mine.h5"
    inside.write_bytes(b"x")
    outside.write_bytes(b"x")
    assert UploadStore.forget_source(inside, cache) and not inside.exists() and not (cache / "abc").exists()
    assert not UploadStore.forget_source(outside, cache) and outside.exists()
    assert not UploadStore.forget_source(cache / ".." / "mine.h5", cache) and outside.exists()


def test_redactor_hides_home_and_working_folder():
    r = Redactor([("/home/alice/work", "."), ("/home/alice", "~")])
    assert r.text("no event index at /home/alice/.local/share/larsight/index") == \
        "no event index at ~/.local/share/larsight/index"
    assert r.text("/home/alice/work/runs/ui/uploads/x.h5:0") == "./runs/ui/uploads/x.h5:0"
    assert r.text("/home/alicex/file and /home/alice") == "/home/alicex/file and ~"
    assert r.value({"a": ["/home/alice/x", 3]}) == {"a": ["~/x", 3]}


# ============================================================================ the app, end to end
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from larsight.agent import Agent
    from larsight.ui.app import build_app, launch

    tmp = tmp_path_factory.mktemp("abuse-app")
    bot = Agent("rules", run_dir=tmp / "run", db=tmp / "threads.sqlite")
    bot.toolset.tool_kwargs["classify_event"] = {"vlm": False}
    # an index path under the home folder that does not exist: its message must not show it
    index = Path.home() / f".larsight-test-no-index-{os.getpid()}"
    demo = build_app(agent=bot, index=index, run_dir=tmp / "run", max_upload_mb=5)
    port = _free_port()
    launch(demo, port=port, prevent_thread_lock=True, quiet=True, max_upload_mb=5)
    yield {"url": f"http://127.0.0.1:{port}/", "demo": demo, "index": index}
    demo.close()


def _client(url):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False)


def test_app_hanging_upload_gets_a_message_and_the_app_keeps_answering(app, hanging_h5, good_h5):
    from gradio_client import handle_file
    from gradio.utils import get_upload_folder

    c = _client(app["url"])
    before = set(Path(get_upload_folder()).rglob("*.h5"))
    status, _, _ = c.predict(handle_file(str(hanging_h5)), 0, "energy", True, "reco", api_name="/load_file")
    assert status.startswith("⚠ **Error:**") and "corrupt.h5" in status
    status, _, _ = c.predict(handle_file(str(good_h5)), 1, "energy", True, "reco", api_name="/load_file")
    assert "upload good.h5, event 1 of 2" in status
    kept = app["demo"].larsight_uploads.folder
    assert str(kept) not in status and "`uploads/" in status    # where the server keeps it: not shown
    # both of Gradio's copies were deleted once used; one file is kept (the one that read)
    assert set(Path(get_upload_folder()).rglob("*.h5")) <= before
    assert len(list(app["demo"].larsight_uploads.folder.iterdir())) == 1
    _, _, answer, _ = c.predict("Where is the vertex?", [], api_name="/ask")
    assert answer["tools"] == ["find_vertex"] and answer["claims"][0]["verdict"] == "supported"


def test_app_failed_similar_search_does_not_show_the_home_folder(app):
    c = _client(app["url"])
    c.predict("nu", 1, 0, "energy", True, "reco", api_name="/simulate")
    gallery, note = c.predict(4, api_name="/similar")
    home = str(Path.home())
    assert gallery == [] and "larsight index build" in note
    assert home not in note and "~/.larsight-test-no-index" in note


def test_same_upload_again_with_another_index_reads_the_kept_copy(good_h5, tmp_path, monkeypatch):
    # as the browser does: the upload's path in Gradio's cache, sent again with another index
    from larsight.ui import app_handlers
    from larsight.ui.app_handlers import AppHandlers

    cache = tmp_path / "gradio"
    (cache / "abc").mkdir(parents=True)
    upload = cache / "abc" / "two.h5"
    shutil.copy(good_h5, upload)
    monkeypatch.setattr(app_handlers, "get_upload_folder", lambda: str(cache))
    h = AppHandlers(None, None, UploadStore(tmp_path / "kept", 100), 5, 4)
    quiet = lambda *a, **k: None  # noqa: E731 - Gradio's progress bar, outside Gradio
    status, _, _, state = h.on_upload(str(upload), 0, "energy", True, "reco", None, progress=quiet)
    assert "upload two.h5, event 0 of 2" in status and state["ref"].endswith(":0")
    assert not upload.exists()                       # Gradio's copy went once it was read
    status, _, _, state = h.on_upload(str(upload), 1, "energy", True, "reco", state, progress=quiet)
    assert "upload two.h5, event 1 of 2" in status   # the same upload, another event: the kept copy
