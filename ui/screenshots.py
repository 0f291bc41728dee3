"""Screenshots of the chat app's main screens for the README (``docs/screenshots/*.png``).

    python -m larsight.ui.screenshots                         # vlm brain (the default of `larsight ui`)
    python -m larsight.ui.screenshots --brain rules --out /tmp/shots

Starts the app in this process with a small temporary event index (simulated events, for the
similar-events gallery; ``--index`` uses an existing one), drives Debian's chromium through
Playwright (``/usr/bin/chromium``, headless) and writes:

- ``app.png``: the whole page after simulating an event and asking for its class;
- ``chat.png``: the chat with the tool steps opened (inputs, outputs, durations) and the
  answer's validation table and class probabilities;
- ``event_display.png``: the 3D view coloured by reconstructed particle, with the overlays,
  and the XZ / YZ projections;
- ``similar.png``: the gallery of the nearest indexed events.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from larsight.agent import Agent  # noqa: E402
from larsight.tools.retrieval import build_index  # noqa: E402
from larsight.ui.app import build_app, launch  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]
QUESTION = "Classify this event and explain why."

# the chat grows to its content (the page scrolls instead) so one picture holds the whole turn
TALL_CHAT = """
#chat, #chat > div, #chat .bubble-wrap, #chat [role="log"] {height: auto !important; max-height: none !important;}
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="docs/screenshots")
    p.add_argument("--brain", default="vlm", choices=["rules", "vlm"])
    p.add_argument("--index", default=None, help="event index (default: a small temporary one)")
    p.add_argument("--mode", default="nu")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--event", type=int, default=0)
    a = p.parse_args(argv)

    # Playwright is a development extra (larsight[dev]), not needed to run the app
    from playwright.sync_api import expect, sync_playwright

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="larsight-shots-"))
    index = a.index
    if index is None:
        index = tmp / "index"
        build_index("sim:nu:seed=5:n=48", index, progress=True)
    bot = Agent(a.brain, run_dir=tmp / "run", db=tmp / "threads.sqlite", index=str(index))
    demo = build_app(agent=bot, index=index, run_dir=tmp / "run")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch(demo, port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1250}, device_scale_factor=1)
            page.route(lambda u: not u.startswith(url), lambda route: route.abort())
            page.goto(url)
            expect(page.locator("#simulate-btn")).to_be_visible(timeout=60_000)
            page.get_by_label("seed").fill(str(a.seed))
            page.get_by_label("event", exact=True).fill(str(a.event))
            page.locator("#simulate-btn").click()
            expect(page.locator("#event-status")).to_contain_text(f"seed={a.seed}", timeout=120_000)
            expect(page.locator("#event-3d .js-plotly-plot")).to_be_visible(timeout=60_000)

            page.locator("#question textarea").fill(QUESTION)
            page.locator("#ask-btn").click()
            chat = page.locator("#chat")
            expect(chat).to_contain_text("Claim validation", timeout=300_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(out / "app.png"), full_page=True)
            print(f"wrote {out / 'app.png'}")

            page.add_style_tag(content=TALL_CHAT)
            for title in ("⚙ classify_event", "⚙ reconstruct"):
                loc = chat.get_by_text(title)
                if loc.count():
                    loc.first.click()
            page.wait_for_timeout(500)
            chat.screenshot(path=str(out / "chat.png"))
            print(f"wrote {out / 'chat.png'}")

            page.get_by_label("particle", exact=True).check()
            page.wait_for_timeout(300)
            expect(page.locator("#event-3d .js-plotly-plot")).to_be_visible()
            page.wait_for_timeout(4000)   # the redraw (reconstruction) and plotly's transition
            page.locator("#event-display").screenshot(path=str(out / "event_display.png"))
            print(f"wrote {out / 'event_display.png'}")

            page.locator("#similar-btn").click()
            expect(page.locator("#gallery-status")).to_contain_text("nearest", timeout=180_000)
            page.wait_for_timeout(1000)
            page.locator("#similar-section").screenshot(path=str(out / "similar.png"))
            print(f"wrote {out / 'similar.png'}")
            browser.close()
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
