"""The reviewer page in a real browser: uvicorn serves the review router on 127.0.0.1 in a thread and headless
Chromium (Debian's /usr/bin/chromium, driven by Playwright) signs in, reads an item, decides it with the
keyboard and sees it leave the queue. Skipped, with the reason, when Playwright or Chromium is missing.

Set UPDATE_DOCS_SCREENSHOT=1 to also write docs/reviewer-page.png (the README's picture of the page).
"""

from __future__ import annotations

import io
import os
import re
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
    draw.text((24, 104), "PICNIC TIME", fill="#1f2933")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def fill_queue(queue) -> tuple[int, int]:
    def scores(hate: float, image: float | None) -> dict:
        return {"toxicity": {"fused": 0.31, "text": 0.35, "image": image and 0.12},
                "hate": {"fused": hate, "text": hate - 0.1, "image": image},
                "harassment": {"fused": 0.08, "text": 0.07, "image": image and 0.05}}

    first = NewItem(post_id="post-1", text="Placeholder caption about a picnic in the park.", image=placeholder_png(),
                    image_mime="image/png", scores=scores(0.74, 0.66), action="review", model_version="m1",
                    ocr_text="PICNIC TIME")
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
    expect(page.locator("#item-ocr-text")).to_have_text("PICNIC TIME")  # what the model read in the picture
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


def test_skip_walks_the_whole_queue_images_start_blurred_notes_reach_the_export_and_leaving_releases(
        server, browser, tmp_path):
    import json

    from playwright.sync_api import expect

    base, queue = server
    first_id, second_id = fill_queue(queue)
    third = NewItem(post_id="post-3", text="A third placeholder post about trains.", action="allow", model_version="m1",
                    reason="random_sample", scores={"toxicity": {"fused": 0.1, "text": 0.1, "image": None}})
    third_id = queue.enqueue(third, THRESHOLDS)[0]
    texts = {first_id: "Placeholder caption about a picnic in the park.",
             second_id: "Another placeholder post about the weather.", third_id: "A third placeholder post about trains."}
    page = browser.new_page(viewport={"width": 1280, "height": 960})
    page.set_default_timeout(10_000)
    page.goto(f"{base}/review")
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Open queue").click()
    expect(page.locator("#item-text")).to_have_text(texts[first_id])

    image = page.locator("#item-image")
    expect(image).to_have_class("blurred")  # reviewer well-being: nothing shown until asked
    page.keyboard.press("v")
    expect(image).not_to_have_class("blurred")
    expect(page.locator("#reveal-image")).to_have_attribute("aria-pressed", "true")

    # Skip reaches every open item (not just the top two), then starts again from the top.
    for item_id in (second_id, third_id, first_id):
        expect(page.locator("#skip")).to_be_enabled()  # the previous step has finished (one request at a time)
        page.keyboard.press("s")
        expect(page.locator("#item-text")).to_have_text(texts[item_id])
    expect(page.locator("#message")).to_contain_text("skipped every open item")
    expect(image).to_have_class("blurred")  # a new item starts blurred again
    assert queue.stats()["claimed"] == 1  # only the item on screen is held

    expect(page.locator("#skip")).to_be_enabled()
    page.locator("#note").fill("placeholder note from the page")
    page.locator("#note").press("Escape")
    page.keyboard.press("a")
    page.keyboard.press("Enter")
    expect(page.locator("#message")).to_contain_text(f"#{first_id} decided: allow")
    queue.export_decisions(tmp_path / "export" / "reviewed.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "export" / "reviewed.jsonl").read_text().splitlines()]
    assert [r["note"] for r in rows if r["id"] == "post-1"] == ["placeholder note from the page"]

    # The next item is claimed once the page shows it: leaving before the claim's answer arrived would leave the
    # claim to its lease (the page cannot release what it does not know it holds).
    shown = page.locator("#item-text")
    expect(shown).to_have_text(re.compile("|".join(re.escape(texts[i]) for i in (second_id, third_id))))
    held = next(i for i in (second_id, third_id) if texts[i] == shown.text_content())
    assert queue.get(held).claim_owner == "alice"
    page.goto("about:blank")  # leaving the page gives the claim back at once
    deadline = time.monotonic() + 10
    while queue.get(held).claim_owner is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert queue.get(held).claim_owner is None and queue.stats()["claimed"] == 0


def test_a_reviewer_undoes_a_decision_and_asks_for_a_second_review_from_the_page(server, browser):
    from playwright.sync_api import expect

    base, queue = server
    first_id, second_id = fill_queue(queue)
    page = browser.new_page(viewport={"width": 1280, "height": 960})
    page.set_default_timeout(10_000)
    page.goto(f"{base}/review")
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Open queue").click()
    expect(page.locator("#item-id")).to_have_text(f"#{first_id}")
    expect(page.locator("#skip")).to_be_enabled()  # signed in and idle (one request at a time)
    page.keyboard.press("b")
    page.keyboard.press("Enter")
    expect(page.locator("#item-id")).to_have_text(f"#{second_id}")
    recent = page.locator(f"#recent-list li[data-item='{first_id}']")
    expect(recent).to_contain_text("block")

    expect(page.locator("#skip")).to_be_enabled()
    recent.get_by_role("button", name="Undo").click()  # a slip of the key: the item comes back to decide again
    expect(page.locator("#item-id")).to_have_text(f"#{first_id}")
    expect(page.locator("#message")).to_contain_text("undone")
    assert queue.decision(first_id) is None and queue.get(second_id).claim_owner is None
    assert [e.event for e in queue.audit(first_id)][-1] == "decision_undone"

    expect(page.locator("#skip")).to_be_enabled()
    page.keyboard.press("a")
    page.keyboard.press("Enter")
    expect(page.locator("#message")).to_contain_text(f"#{first_id} decided: allow")
    expect(page.locator("#skip")).to_be_enabled()  # idle again (the next item's claim is done): one request at a time
    page.locator(f"#recent-list li[data-item='{first_id}']").get_by_role("button", name="Second review").click()
    expect(page.locator("#message")).to_contain_text("second opinion")
    assert queue.get(first_id).status == "pending" and queue.decision(first_id).action == "allow"


def test_filters_choose_which_items_a_reviewer_works_on(server, browser):
    from playwright.sync_api import expect

    base, queue = server
    first_id, second_id = fill_queue(queue)
    page = browser.new_page(viewport={"width": 1280, "height": 960})
    page.set_default_timeout(10_000)
    page.goto(f"{base}/review")
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Open queue").click()
    expect(page.locator("#item-id")).to_have_text(f"#{first_id}")
    expect(page.locator("#skip")).to_be_enabled()
    page.locator("#filter-reason").select_option("random_sample")
    expect(page.locator("#item-id")).to_have_text(f"#{second_id}")
    expect(page.locator("#item-reason")).to_contain_text("random sample")
    assert queue.get(first_id).claim_owner is None  # the item on screen went back when the filter changed
    expect(page.locator("#skip")).to_be_enabled()
    page.locator("#filter-reason").select_option("")
    page.locator("#filter-category").select_option("harassment")  # every harassment score is below review
    expect(page.locator("#empty-text")).to_have_text("No open item matches these filters.")
    page.locator("#filter-category").select_option("hate")
    expect(page.locator("#empty-text")).to_be_hidden()  # the claim came back (the id cell still shows the old one)
    expect(page.locator("#item-id")).to_have_text(f"#{first_id}")
    page.wait_for_function("document.getElementById('skip') && !document.getElementById('skip').disabled")
    assert queue.stats()["claimed"] == 1
