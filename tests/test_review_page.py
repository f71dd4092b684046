"""The reviewer page in a real browser: uvicorn serves the review router on 127.0.0.1 in a thread and headless
Chromium (Debian's /usr/bin/chromium, driven by Playwright) signs in, reads an item, decides it with the
keyboard and sees it leave the queue. Skipped, with the reason, when Playwright or Chromium is missing.

Set UPDATE_DOCS_SCREENSHOT=1 to also write docs/reviewer-page.png (the README's picture of the page).
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from fastapi import FastAPI
from PIL import Image, ImageDraw

from moderation.policy import ClassThresholds, Thresholds
from serve.auth import Authenticator
from serve.db import NewItem, open_queue
from serve.review_api import ReviewContext, mount_review
from serve.settings import ServeSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
CATEGORIES = ["toxicity", "hate", "harassment", "violence"]
# harassment's block threshold missed its precision target: the page must say it never blocks.
THRESHOLDS = Thresholds(categories={c: ClassThresholds(review=0.4, block=0.8, block_target_met=c != "harassment")
                                    for c in CATEGORIES})
KEY = "alice-reviewer-key-0001"
DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "reviewer-page.png"


def placeholder_png() -> bytes:
    image = Image.new("RGB", (160, 120), "#dfe7f2")
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 140, 100), fill="#1f5fbf")
    draw.ellipse((55, 35, 105, 85), fill="#ffbf47")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def fill_queue(queue) -> tuple[int, int]:
    def scores(hate: float, image: float | None) -> dict:
        return {"toxicity": {"fused": 0.31, "text": 0.35, "image": image and 0.12},
                "hate": {"fused": hate, "text": hate - 0.1, "image": image},
                "harassment": {"fused": 0.08, "text": 0.07, "image": image and 0.05}}

    first = NewItem(post_id="post-1", text="Placeholder caption about a picnic in the park.", image=placeholder_png(),
                    image_mime="image/png", scores=scores(0.74, 0.66), action="review", model_version="m1")
    second = NewItem(post_id="post-2", text="Another placeholder post about the weather.", scores=scores(0.45, None),
                     action="allow", model_version="m1", reason="random_sample")
    return queue.enqueue(first, THRESHOLDS)[0], queue.enqueue(second, THRESHOLDS)[0]


@pytest.fixture
def server(tmp_path):
    """(base URL, queue) with the review router served by uvicorn on a free loopback port."""
    uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is needed to serve the page")
    queue = open_queue(f"sqlite:///{tmp_path / 'queue.db'}", categories=CATEGORIES)
    settings = ServeSettings(api_keys=[{"key": KEY, "name": "alice", "roles": ["reviewer"]}])
    app = FastAPI()
    context = ReviewContext(lambda: queue, settings, CATEGORIES, {"m1": THRESHOLDS}.get)
    authenticator = Authenticator(settings)
    mount_review(app, lambda: context, lambda: authenticator)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound here and handed over: no race for the port
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 10 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", queue
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()
    queue.close()


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); Playwright's own browser download is not used")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_reviewer_decides_an_item_with_the_keyboard(server, browser, tmp_path):
    from playwright.sync_api import expect

    base, queue = server
    first_id, second_id = fill_queue(queue)
    page = browser.new_page(viewport={"width": 1280, "height": 960})
    page.set_default_timeout(10_000)
    page.goto(f"{base}/review")
    expect(page.locator("#auth-banner")).to_be_hidden()  # auth is required here: no dev-mode banner

    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Open queue").click()
    expect(page.locator("#who-name")).to_have_text("alice")
    expect(page.locator("#item-text")).to_have_text("Placeholder caption about a picnic in the park.")
    expect(page.locator("#stat-pending")).to_have_text("1")  # the other item; this one is claimed
    hate_row = page.locator("#scores-body tr", has_text="hate")
    expect(hate_row.locator("td.num")).to_have_text(["0.740", "0.640", "0.660"])  # fused, text only, image only
    expect(page.locator("#item-reason")).to_contain_text("review band")
    expect(page.locator("#item-drivers")).to_have_text("hate")
    expect(hate_row.locator("td.band")).to_have_text("0.40 / 0.80")
    harassment_band = page.locator("#scores-body tr", has_text="harassment").locator("td.band")
    expect(harassment_band).to_contain_text("never blocks")
    expect(harassment_band).to_contain_text("missed its precision target")
    expect(page.locator("#label-hate")).to_be_checked()  # pre-filled: 0.74 >= the review threshold 0.4
    expect(page.locator("#label-toxicity")).not_to_be_checked()
    page.wait_for_function("document.getElementById('item-image').naturalWidth === 160")

    page.keyboard.press("4")  # toggle violence (category 4) on
    page.keyboard.press("b")
    expect(page.locator("#label-violence")).to_be_checked()
    expect(page.locator("#choose-block")).to_have_attribute("aria-pressed", "true")
    page.screenshot(path=str(tmp_path / "reviewer-page.png"), full_page=True)
    if os.environ.get("UPDATE_DOCS_SCREENSHOT"):
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "reviewer-page.png", DOCS_SCREENSHOT)

    page.keyboard.press("Enter")
    expect(page.locator("#item-text")).to_have_text("Another placeholder post about the weather.")  # auto-claimed
    expect(page.locator("#stat-pending")).to_have_text("0")
    expect(page.locator("#stat-decided")).to_have_text("1")
    expect(page.locator("#message")).to_contain_text(f"#{first_id} decided: block")
    page.screenshot(path=str(tmp_path / "after-decision.png"), full_page=True)

    stats = queue.stats()
    assert stats["decided"] == 1 and stats["pending"] == 0 and stats["claimed"] == 1
    decision = queue.decision(first_id)
    assert decision.reviewer == "alice" and decision.action == "block"
    assert decision.labels == {"toxicity": 0, "hate": 1, "harassment": 0, "violence": 1}
    assert queue.get(second_id).claim_owner == "alice"
