"""The chat app in a real browser: Debian's chromium driven by Playwright for Python.

Loads the page, simulates an event, sees a non-empty 3D plot, asks a question, sees a tool step
(a collapsible thought) and the validated answer, and saves screenshots in the test's output
folder. Every request that leaves 127.0.0.1 is refused and recorded: the app must work offline.
``make test`` installs chromium with apt-get when it is missing; without it this test skips.
"""
import os
import re
import shutil
import socket
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = Path(os.environ.get("LARSIGHT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage"]


def _need_browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `make test` installs Debian's chromium with apt-get "
                    f"(as root or with sudo); browsers cannot be downloaded here")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("Playwright for Python is not installed (pip install -e '.[dev]')")


FEEDBACK_DB: list = []   # where the app under test stores feedback


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    _need_browser()
    from larsight.agent import Agent
    from larsight.tools.retrieval import build_index
    from larsight.ui.app import build_app, launch

    tmp = tmp_path_factory.mktemp("ui-browser")
    build_index("sim:nu:seed=5:n=8", tmp / "index", progress=False)
    bot = Agent("rules", run_dir=tmp / "run", db=tmp / "threads.sqlite")
    bot.toolset.tool_kwargs["classify_event"] = {"vlm": False}
    bot.toolset.tool_kwargs["describe"] = {"vlm": False}
    demo = build_app(agent=bot, index=tmp / "index", run_dir=tmp / "run", feedback_db=tmp / "feedback.sqlite")
    FEEDBACK_DB.append(tmp / "feedback.sqlite")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch(demo, port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_simulate_ask_and_see_a_validated_answer(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    outside: list[str] = []
    errors: list[str] = []

    def offline(route):
        outside.append(route.request.url)
        route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            page.route(lambda url: not url.startswith(app_url), offline)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(app_url, wait_until="domcontentloaded")
            expect(page.locator("#simulate-btn")).to_be_visible(timeout=60_000)

            # simulate event 0 of seed 1
            page.get_by_label("seed").fill("1")
            page.locator("#simulate-btn").click()
            expect(page.locator("#event-status")).to_contain_text("sim:nu:seed=1:voxel=0.6:index=0",
                                                                  timeout=90_000)
            plot = page.locator("#event-3d .js-plotly-plot")
            expect(plot).to_be_visible(timeout=30_000)
            # what plotly.js drew (its decoded traces): points of the 3D scatter traces
            n_points = plot.evaluate(
                "el => el._fullData.filter(t => t.type === 'scatter3d' && t.visible === true)"
                ".reduce((n, t) => n + (t._length || 0), 0)")
            assert n_points > 100
            box = plot.bounding_box()
            assert box is not None and box["height"] > 300 and box["width"] > 300
            page.screenshot(path=str(tmp_path / "ui_event.png"), full_page=True)

            # ask; the tool step appears as a thought, then the validated answer
            page.locator("#question textarea").fill("Classify this event and explain why.")
            page.locator("#ask-btn").click()
            chat = page.locator("#chat")
            expect(chat).to_contain_text("Claim validation", timeout=90_000)
            expect(chat).to_contain_text("⚙ classify_event")
            expect(chat).to_contain_text("⚙ reconstruct")
            expect(chat).to_contain_text("✔ supported")
            expect(chat).not_to_contain_text("✘ contradicted")
            expect(chat).to_contain_text("Class probabilities")
            expect(page.locator("#class-probs")).to_contain_text(re.compile(r"nue_cc|numu_cc|nc"))
            # open the first tool thought: its inputs and outputs are there
            chat.get_by_text("⚙ classify_event").first.click()
            expect(chat).to_contain_text("Input:", timeout=10_000)
            expect(chat).to_contain_text("Output:")
            page.screenshot(path=str(tmp_path / "ui_answer.png"), full_page=True)

            # a follow-up in the same thread
            page.locator("#question textarea").fill("Where is the vertex?")
            page.locator("#ask-btn").click()
            expect(chat).to_contain_text("The vertex is at", timeout=60_000)
            page.screenshot(path=str(tmp_path / "ui_follow_up.png"), full_page=True)

            # expert feedback on the last answer: the panel shows its claims; mark it wrong, comment, save
            page.get_by_text("Expert feedback on an answer").click()
            expect(page.locator("#feedback-answer-text")).to_contain_text("Where is the vertex?", timeout=30_000)
            page.locator("#feedback-verdict").get_by_text("wrong").click()
            page.locator("#feedback-comment textarea").fill("the vertex is at the proton's start, 2 cm upstream")
            page.locator("#feedback-author textarea, #feedback-author input").first.fill("browser-test")
            page.locator("#feedback-save").click()
            expect(page.locator("#feedback-status")).to_contain_text("Saved feedback #", timeout=30_000)
            page.screenshot(path=str(tmp_path / "ui_feedback.png"), full_page=True)

            # similar events: a gallery of the index's nearest events; a click loads one
            page.locator("#similar-btn").click()
            expect(page.locator("#gallery-status")).to_contain_text("8 indexed", timeout=60_000)
            tiles = page.locator("#similar-gallery img")
            expect(tiles).to_have_count(6, timeout=10_000)
            tiles.nth(1).click()
            expect(page.locator("#event-status")).to_contain_text("similar event #2", timeout=60_000)
            expect(page.locator("#event-status")).to_contain_text("sim:nu:seed=5:voxel=0.6:index=")
            page.screenshot(path=str(tmp_path / "ui_similar.png"), full_page=True)
        finally:
            browser.close()
    keep = os.environ.get("LARSIGHT_TEST_SCREENSHOTS")
    if keep:   # copy the screenshots somewhere a person (or CI) can look at them
        Path(keep).mkdir(parents=True, exist_ok=True)
        for png in tmp_path.glob("ui_*.png"):
            shutil.copy(png, Path(keep) / png.name)
    print(f"screenshots: {tmp_path}")
    assert (tmp_path / "ui_answer.png").stat().st_size > 10_000
    # the click reached the database with the answer's full context, and exports
    from larsight.agent.feedback import FeedbackStore, export

    with FeedbackStore(FEEDBACK_DB[0]) as store:
        [item] = [i for i in store.list(limit=None) if i.author == "browser-test"]
        full = store.get(item.id)
        assert full.verdict == "down" and "2 cm upstream" in full.comment
        assert full.answer.question == "Where is the vertex?" and full.answer.tools
        assert any(t.get("tool") == "find_vertex" for t in full.answer.tools)
        rep = export(store, tmp_path / "feedback.jsonl", fmt="jsonl")
    assert rep.lines >= 1 and "2 cm upstream" in (tmp_path / "feedback.jsonl").read_text()
    assert not errors, f"JavaScript errors on the page: {errors}"
    assert not [u for u in outside if not u.startswith("data:")], \
        f"the page tried to reach outside 127.0.0.1: {outside}"
