"""The chat app (ui/app.py): its event sources and chat rendering, then the whole app driven
end to end through its API with gradio_client (simulate, ask, a validated answer, follow-ups
in the same thread, two sessions kept apart, similar events, a bad upload)."""
import os
import socket

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def rules_agent(tmp_path_factory):
    from larsight.agent import Agent

    tmp = tmp_path_factory.mktemp("ui-agent")
    bot = Agent("rules", run_dir=tmp / "run", db=tmp / "threads.sqlite")
    # the encoder's event head only: loading the VLM is a slow test's business
    bot.toolset.tool_kwargs["classify_event"] = {"vlm": False}
    bot.toolset.tool_kwargs["describe"] = {"vlm": False}
    return bot


# ============================================================================ event sources
def test_simulate_event_uses_the_index_key():
    from larsight.ui.app_events import EventSourceError, simulate_event

    a = simulate_event("nu", 1, 0)
    assert a.ref == "sim:nu:seed=1:voxel=0.6:index=0"
    assert len(a.event) > 100 and a.event.meta.volume.voxel_size_cm == pytest.approx(0.6)
    assert "Truth" in a.summary() and a.ref in a.summary()
    with pytest.raises(EventSourceError, match="mode"):
        simulate_event("cosmic", 0, 0)
    with pytest.raises(EventSourceError, match="seed"):
        simulate_event("nu", -1, 0)


def test_upload_good_and_bad_files(tmp_path):
    from larsight.events.formats import write
    from larsight.ui.app_events import EventSourceError, load_upload, simulate_event

    good = tmp_path / "two.h5"
    write(good, [simulate_event("nu", 1, 0).event, simulate_event("nu", 1, 1).event])
    loaded, n = load_upload(good, 1, upload_dir=tmp_path / "up", name="two.h5")
    assert n == 2 and loaded.ref.endswith(".h5:1") and len(loaded.event) > 1
    assert "two.h5, event 1 of 2" in loaded.source
    # the same content uploaded again is the same stored file
    again, _ = load_upload(good, 0, upload_dir=tmp_path / "up")
    assert again.ref.rsplit(":", 1)[0] == loaded.ref.rsplit(":", 1)[0]

    with pytest.raises(EventSourceError, match=r"holds 2 events"):
        load_upload(good, 5, upload_dir=tmp_path / "up", name="two.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"this is not an HDF5 file" * 10)
    with pytest.raises(EventSourceError, match="junk.h5") as err:
        load_upload(junk, 0, upload_dir=tmp_path / "up", name="junk.h5")
    assert "Traceback" not in str(err.value)
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(EventSourceError, match=r"\.h5.*\.root"):
        load_upload(txt, 0, upload_dir=tmp_path / "up")
    with pytest.raises(EventSourceError, match="limit is 1e-06 MB"):
        load_upload(good, 0, upload_dir=tmp_path / "up", max_mb=1e-6)
    with pytest.raises(EventSourceError, match="no file"):
        load_upload(None, 0, upload_dir=tmp_path / "up")


def test_missing_index_says_how_to_build_one(tmp_path):
    from larsight.ui.app_events import EventSourceError, index_info, similar_events

    ok, md = index_info(tmp_path / "no-index")
    assert not ok and "larsight index build" in md and "Build a small index" in md
    with pytest.raises(EventSourceError, match="larsight index build"):
        similar_events("sim:nu:seed=1:voxel=0.6:index=0", 3, tmp_path / "no-index")


def test_figures_have_explicit_heights_and_points():
    from larsight.ui.app_display import HEIGHT_2D, HEIGHT_3D, event_figure, projections_figure, thumbnail
    from larsight.ui.app_events import simulate_event

    ev = simulate_event("nu", 1, 0).event
    fig, note = event_figure(ev, color_by="semantic", overlay=True)
    assert fig.layout.height == HEIGHT_3D and note == ""
    n3d = sum(len(t.x) for t in fig.data if t.type == "scatter3d" and t.x is not None)
    assert n3d >= len(ev)   # every voxel drawn, plus the overlays
    assert any("vertex" in (t.name or "") for t in fig.data)
    assert projections_figure(ev).layout.height == HEIGHT_2D
    img = thumbnail(ev)
    assert img.shape == (160, 160, 3) and img.dtype == np.uint8 and (img != 255).any()


# ============================================================================ the chat
def test_chat_turn_streams_thoughts_then_a_validated_answer(rules_agent):
    from larsight.ui.app_chat import chat_turn
    from larsight.ui.app_events import simulate_event

    ref = simulate_event("nu", 1, 0).ref
    updates = list(chat_turn(rules_agent, ref, "Classify this event and explain why.", "t-chat", []))
    msgs, answer = updates[-1]
    assert answer is not None and answer.thread_id == "t-chat" and answer.event == ref
    assert all(a is None for _, a in updates[:-1]) and len(updates) > 4
    assert msgs[0] == {"role": "user", "content": "Classify this event and explain why."}
    # a tool thought was shown running before it was shown done, with inputs and outputs
    pending = [m for ms, _ in updates for m in ms if (m.get("metadata") or {}).get("status") == "pending"]
    assert pending and pending[0]["metadata"]["title"] == "⚙ classify_event"
    tools = [m for m in msgs if (m.get("metadata") or {}).get("title", "").startswith("⚙")]
    assert [m["metadata"]["title"] for m in tools] == ["⚙ classify_event", "⚙ reconstruct"]
    for m in tools:
        assert m["metadata"]["status"] == "done" and m["metadata"]["duration"] >= 0
        assert "**Input:**" in m["content"] and "**Output:**" in m["content"] and "```json" in m["content"]
    final = msgs[-1]["content"]
    assert final.startswith(answer.text) and "| claim | verdict |" in final
    assert f"{answer.n_supported} supported" in final and "Class probabilities" in final
    assert "✘" not in final and answer.n_contradicted == 0
    # the answer streamed in: earlier updates carried a prefix of it
    partial = [ms[-1]["content"] for ms, _ in updates[:-1] if ms[-1].get("role") == "assistant"
               and not ms[-1].get("metadata") and ms[-1]["content"].endswith(" …")]
    assert partial and answer.text.startswith(partial[0][:-2])


def test_chat_turn_reports_an_agent_failure():
    from larsight.ui.app_chat import chat_turn

    class Broken:
        def stream(self, *a, **k):
            raise RuntimeError("the brain fell over")
            yield  # pragma: no cover

    msgs, answer = list(chat_turn(Broken(), None, "hi", "t", []))[-1]
    assert answer is None and "the brain fell over" in msgs[-1]["content"]


def test_validation_table_escapes_and_marks_verdicts():
    from larsight.agent.validate import Check, Claim
    from larsight.ui.app_chat import probabilities_markdown, validation_markdown

    checks = [Check(claim=Claim(kind="count", subject="proton", value=2, unit="count"), verdict="contradicted",
                    evidence={"n_proton": 1, "note": "a|b"}, tolerance="exact count", tool="reconstruct")]
    md = validation_markdown(checks)
    assert "✘ contradicted" in md and "n_proton = 1" in md and "a\\|b" in md
    assert validation_markdown([]).startswith("_No checkable")
    assert probabilities_markdown({"nc": 0.2, "nue_cc": 0.7, "numu_cc": 0.1}).index("**nu_e CC 0.70**") > 0


# ============================================================================ the app, end to end
@pytest.fixture(scope="module")
def app_url(rules_agent, tmp_path_factory):
    from larsight.tools.retrieval import build_index
    from larsight.ui.app import build_app, launch

    tmp = tmp_path_factory.mktemp("ui-app")
    index = tmp / "index"
    build_index("sim:nu:seed=5:n=8", index, progress=False)
    demo = build_app(agent=rules_agent, index=index, run_dir=tmp / "run", max_upload_mb=5)
    port = _free_port()
    launch(demo, port=port, prevent_thread_lock=True, quiet=True, max_upload_mb=5)
    yield {"url": f"http://127.0.0.1:{port}/", "index": index}
    demo.close()


def _client(url):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False)


def test_api_simulate_ask_and_follow_up(app_url):
    c = _client(app_url["url"])
    status, fig3d, fig2d = c.predict("nu", 1, 0, "semantic", True, "reco", api_name="/simulate")
    assert "sim:nu:seed=1:voxel=0.6:index=0" in status and fig3d["type"] == "plotly"
    assert '"scatter3d"' in fig3d["plot"] and '"height":560' in fig3d["plot"].replace(" ", "")

    history, probs, answer, box = c.predict("Classify this event and explain why.", [], api_name="/ask")
    assert box == ""
    assert answer["event"] == "sim:nu:seed=1:voxel=0.6:index=0" and answer["tools"] == ["classify_event", "reconstruct"]
    assert answer["claims"] and answer["n_contradicted"] == 0
    assert {c_["verdict"] for c_ in answer["claims"]} <= {"supported", "unverifiable"}
    assert probs["label"] == answer["event_class"] and len(probs["confidences"]) == 3
    thoughts = [m for m in history if m.get("metadata") and m["metadata"].get("title")]
    assert any(m["metadata"]["title"] == "⚙ classify_event" and m["metadata"]["status"] == "done" for m in thoughts)
    assert "| claim | verdict |" in history[-1]["content"][0]["text"]

    # a follow-up keeps the thread and the event
    history2, _, follow, _ = c.predict("Where is the vertex?", history, api_name="/ask")
    assert follow["thread_id"] == answer["thread_id"] and follow["event"] == answer["event"]
    assert follow["tools"] == ["find_vertex"] and follow["claims"][0]["verdict"] == "supported"
    assert len(history2) > len(history)

    # another session (another client) gets its own thread
    other = _client(app_url["url"])
    other.predict("nu", 1, 1, "energy", True, "reco", api_name="/simulate")
    _, _, theirs, _ = other.predict("Where is the vertex?", [], api_name="/ask")
    assert theirs["thread_id"] != answer["thread_id"] and theirs["event"].endswith("index=1")

    # a new conversation is a new thread
    c.predict(api_name="/new_chat")
    _, _, fresh, _ = c.predict("Where is the vertex?", [], api_name="/ask")
    assert fresh["thread_id"] not in (answer["thread_id"], theirs["thread_id"])


def test_api_similar_events_and_bad_upload(app_url, tmp_path):
    from gradio_client import handle_file

    from larsight.ui.app_events import similar_events

    c = _client(app_url["url"])
    gallery, note = c.predict(4, api_name="/similar")
    assert gallery == [] and "Load an event first" in note
    c.predict("nu", 5, 2, "energy", True, "reco", api_name="/simulate")   # an indexed event
    gallery, note = c.predict(4, api_name="/similar")
    assert len(gallery) == 4 and "8 indexed" in note
    assert all(g["caption"].startswith(f"#{i + 1} ") for i, g in enumerate(gallery))
    keys = similar_events("sim:nu:seed=5:voxel=0.6:index=2", 4, app_url["index"]).keys
    assert len(keys) == 4 and "sim:nu:seed=5:voxel=0.6:index=2" not in keys   # itself excluded

    junk = tmp_path / "broken.h5"
    junk.write_bytes(b"\x00not hdf5" * 50)
    status, fig3d, _ = c.predict(handle_file(str(junk)), 0, "energy", True, "reco", api_name="/load_file")
    assert status.startswith("⚠ **Error:**") and "broken.h5" in status and "PILArNet-M" in status

    status, _, _ = c.predict("3", "energy", True, "reco", api_name="/load_from_index")
    assert "sim:nu:seed=5:voxel=0.6:index=3" in status
    status, _, _ = c.predict("999", "energy", True, "reco", api_name="/load_from_index")
    assert "no event with id 999" in status and "ids 0..7" in status


def test_cli_ui_options():
    from larsight.ui.cli import build_parser, cmd_ui

    args = build_parser().parse_args(["ui"])
    assert args.func is cmd_ui and args.host == "127.0.0.1" and args.port == 7860 and args.brain == "vlm"
    args = build_parser().parse_args(["ui", "--host", "0.0.0.0", "--port", "8000", "--brain", "rules",
                                      "--max-upload-mb", "20"])
    assert (args.host, args.port, args.brain, args.max_upload_mb) == ("0.0.0.0", 8000, "rules", 20.0)


def test_build_small_index_once(tmp_path):
    from larsight.ui.app_events import EventSourceError, build_small_index, index_info

    seen = []
    report = build_small_index(tmp_path / "idx", n=3, seed=1, progress=lambda f, t: seen.append(t))
    assert report.n_events == 3 and report.n_added == 3
    ok, md = index_info(tmp_path / "idx")
    assert ok and "3 events" in md and seen
    with pytest.raises(EventSourceError, match="already exists"):
        build_small_index(tmp_path / "idx", n=3)
