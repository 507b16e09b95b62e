"""The chat page in a real browser: Debian's Chromium driven by Playwright.

Without Chromium (or Playwright) the test is skipped with the reason, except with
``GENLAB_REQUIRE_REFERENCES=1`` (set by ``.ci/run``, which installs ``chromium``), where it fails.
"""

from __future__ import annotations

import os
import shutil

import pytest

from genlab.methods.autoregressive.decoding import generate
from references import unavailable

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    path = os.environ.get("GENLAB_CHROMIUM") or shutil.which("chromium")
    path = path or shutil.which("chromium-browser")
    if path is None:
        unavailable("Chromium (/usr/bin/chromium)", "apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        unavailable("the playwright package")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()


def set_value(page, selector: str, value: str) -> None:
    """Set an input's value as a user would (range inputs cannot be typed into)."""
    page.eval_on_selector(
        selector,
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }",
        value,
    )


BUSY = "document.body.dataset.busy === 'true'"
IDLE = "document.body.dataset.busy === 'false'"
REPLY = "document.querySelector('.message.assistant:last-child .content')"


def test_chat_page_streams_stops_and_starts_over(browser, slow_server, model, tokenizer):
    url = slow_server.url
    page = browser.new_page(viewport={"width": 375, "height": 740})  # a phone
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(url)
    page.wait_for_function("document.getElementById('model').textContent.includes('tiny-chat')")
    # a phone-sized screen needs no sideways scrolling
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    page.click("#settings-toggle")
    set_value(page, "#temperature", "0")
    set_value(page, "#max-tokens", "30")
    page.fill("#system", "Be brief.")

    # Shift+Enter starts a new line, Enter sends
    page.click("#input")
    page.keyboard.type("Tell me about")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("the cat.")
    assert page.input_value("#input") == "Tell me about\nthe cat."
    assert page.locator(".message").count() == 0
    page.keyboard.press("Enter")
    # the reply appears while it is still being generated, then completes
    page.wait_for_function(f"{BUSY} && {REPLY}.textContent.length > 0")
    page.wait_for_function(IDLE)
    assert page.locator(".message.user .content").inner_text() == "Tell me about\nthe cat."
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Tell me about\nthe cat."},
    ]
    ids = tokenizer.render_prompt(messages)
    (gen,) = generate(model, [ids], max_new_tokens=30, temperature=0)
    expected = tokenizer.decode(gen.tokens, skip_special=True)
    assert page.evaluate(f"{REPLY}.textContent") == expected
    assert "token limit" in page.locator(".message.assistant .note").inner_text()

    # a long reply, stopped midway: the server stops decoding it
    before = slow_server.wait_idle()
    set_value(page, "#max-tokens", "200")
    page.fill("#input", "And the dog?")
    page.click("#send")
    page.wait_for_function(f"{BUSY} && {REPLY}.textContent.length > 10")
    page.click("#stop")
    page.wait_for_function(IDLE)
    assert page.locator(".message.assistant").last.locator(".note").inner_text() == "stopped"
    after = slow_server.wait_idle(timeout=2)  # 200 tokens would take 4 s
    assert after["cancelled"] == before["cancelled"] + 1
    assert after["generated_tokens"] - before["generated_tokens"] < 100
    assert page.locator(".message").count() == 4

    page.click("#new-chat")
    assert page.locator(".message").count() == 0
    assert page.locator("#empty").is_visible()
    assert page.evaluate("document.activeElement.id") == "input"

    # nothing but this server was asked for anything (the favicon is an inline data: URL)
    assert requested and all(u.startswith(url) or u.startswith("data:") for u in requested)
    page.close()
