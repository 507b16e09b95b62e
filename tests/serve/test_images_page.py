"""The page's Images tab in a real browser (Debian's Chromium driven by Playwright): a prompt
typed and Generate clicked shows the server's PNGs, of the run's size, and a refused prompt
shows the server's error as text. Skipped without Chromium, failed in CI (``test_page``)."""

from __future__ import annotations

import base64

import openai
import pytest
from test_images_api import IMAGE_MODEL, SIZE, train_image_run
from test_page import browser  # noqa: F401  (the fixture)

from genlab.serve.api import create_app
from genlab.serve.engine import Engine
from genlab.serve.images import ImageGenerator

IMAGES = "document.querySelectorAll('#image-results img')"


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    return train_image_run(tmp_path_factory)


def test_the_images_tab_draws_and_shows_errors(browser, image_run, live_server):  # noqa: F811
    images = ImageGenerator.load(image_run)
    live = live_server(create_app(None, images=images), None)
    page = browser.new_page(viewport={"width": 375, "height": 740})  # a phone
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(live.url)
    # an image model alone: the page opens on its tab, with no chat to switch to
    page.wait_for_function(
        f"document.getElementById('model').textContent.includes('{IMAGE_MODEL}')"
    )
    assert page.is_visible("#images-view") and not page.is_visible("#chat-view")
    assert not page.is_visible("#tabs") and not page.is_visible("#new-chat")
    assert f"{SIZE}x{SIZE}" in page.inner_text("#image-hint")
    assert page.evaluate("document.activeElement.id") == "image-prompt"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    page.keyboard.type("a small red circle on the left")
    page.fill("#image-n", "2")
    page.fill("#image-seed", "5")
    page.fill("#image-steps", "4")
    page.click("#generate")
    page.wait_for_function(f"{IMAGES}.length === 2 && [...{IMAGES}].every((i) => i.complete)")
    shown = page.eval_on_selector_all(
        "#image-results img", "els => els.map(e => [e.src, e.naturalWidth, e.naturalHeight])"
    )
    assert [(w, h) for _, w, h in shown] == [(SIZE, SIZE)] * 2
    prefix = "data:image/png;base64,"
    assert all(src.startswith(prefix) for src, _, _ in shown)
    # the very PNGs the API gives for the same request
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="none", max_retries=0)
    out = client.images.generate(
        model=IMAGE_MODEL,
        prompt="a small red circle on the left",
        n=2,
        extra_body={"seed": 5, "steps": 4},
    )
    assert [src.removeprefix(prefix) for src, _, _ in shown] == [d.b64_json for d in out.data]
    assert base64.b64decode(shown[0][0].removeprefix(prefix))[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.inner_text("#image-results figcaption >> nth=0").endswith(
        "a small red circle on the left"
    )
    assert not page.is_visible("#image-error")

    # a word the model never saw: the server's error, as text; the images stay
    page.fill("#image-prompt", "a purple zebra")
    page.click("#generate")
    page.wait_for_selector("#image-error", state="visible")
    error = page.inner_text("#image-error")
    assert error.startswith("Error: prompt:") and "'zebra'" in error
    assert page.evaluate(f"{IMAGES}.length") == 2
    assert not page.is_disabled("#generate")

    # nothing but this server was asked for anything
    assert requested and all(u.startswith(live.url) or u.startswith("data:") for u in requested)
    page.close()


def test_the_tabs_switch_between_chat_and_images(
    browser,  # noqa: F811
    image_run,
    model,
    tokenizer,
    run_dir,
    live_server,
):
    engine = Engine(model, tokenizer, max_batch=4)
    images = ImageGenerator.load(image_run)
    live = live_server(create_app(engine, model_id=run_dir.name, images=images), engine)
    page = browser.new_page(viewport={"width": 375, "height": 740})  # a phone
    page.goto(live.url)
    page.wait_for_function("document.getElementById('model').textContent.includes('tiny-chat')")
    assert page.is_visible("#tabs") and page.is_visible("#chat-view")
    assert not page.is_visible("#images-view")
    fits = "document.documentElement.scrollWidth <= window.innerWidth"
    assert page.evaluate(fits)
    page.click("#tab-images")
    assert page.is_visible("#images-view") and not page.is_visible("#chat-view")
    assert IMAGE_MODEL in page.inner_text("#model") and page.evaluate(fits)
    page.fill("#image-prompt", "a blue square")
    page.fill("#image-n", "1")
    page.fill("#image-steps", "4")
    page.press("#image-prompt", "Enter")
    page.wait_for_function(f"{IMAGES}.length === 1 && {IMAGES}[0].complete")
    assert page.evaluate(f"{IMAGES}[0].naturalWidth") == SIZE
    page.click("#tab-chat")
    assert page.is_visible("#chat-view") and not page.is_visible("#images-view")
    assert page.evaluate("document.activeElement.id") == "input"
    page.close()
