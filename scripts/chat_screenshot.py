"""Screenshot the chat page talking to a real run: docs/img/chat_page.png.

Starts ``genlab serve RUN`` on a free local port, opens the page in Chromium (Playwright, the
system's ``/usr/bin/chromium``), sends each question in a new chat as a user would (typing,
Enter), waits for the streamed answer, and stacks the three conversations into one picture. Greedy decoding (temperature 0), so the
same run gives the same picture.

    python scripts/chat_screenshot.py runs/demo/ppo --out docs/img/chat_page.png
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from serve import free_port, wait_ready  # noqa: E402  (the serving benchmark's launcher)

# TinyWorld test-split prompts (held out of every stage's training) of three task families
QUESTIONS = (
    'Tell me if this review is positive or negative: "I tried the konot from Zuford. I will '
    'never buy it again. It was awful."',
    "Write 'my blue house finds my bird' in Rozish.",
    "What is the largest number in this list: 14, 63, 9, 11, 7, 68?",
)


def stack(shots: list[tuple[Image.Image, int]], out: str) -> None:
    """The header, each conversation down to its answer's end, then the composer."""
    header = 56  # pixels
    first, _ = shots[0]
    parts = [first.crop((0, 0, first.width, header))]
    parts += [shot.crop((0, header, shot.width, end)) for shot, end in shots]
    parts.append(first.crop((0, first.height - 80, first.width, first.height)))
    sheet = Image.new("RGB", (parts[0].width, sum(p.height for p in parts)), "white")
    y = 0
    for p in parts:
        sheet.paste(p, (0, y))
        y += p.height
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run folder genlab serve opens (e.g. runs/demo/ppo)")
    parser.add_argument("--out", default="docs/img/chat_page.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "genlab", "serve", args.run, "--port", str(port)]
        + ["--seed", str(args.seed), "--log-level", "warning"]
    )
    try:
        wait_ready(url, server)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium)
            page = browser.new_page(viewport={"width": 900, "height": 700})
            page.goto(url)
            page.click("#settings-toggle")
            page.fill("#temperature", "0")
            page.dispatch_event("#temperature", "input")
            page.click("#settings-toggle")
            shots = []
            for question in QUESTIONS:  # one chat each: the demo model is tuned on single turns
                page.click("#new-chat")
                page.fill("#input", question)
                page.press("#input", "Enter")
                page.wait_for_function(  # the answer is in when the send button is back
                    "document.querySelectorAll('.message.assistant').length == 1"
                    " && !document.getElementById('send').hidden",
                    timeout=60_000,
                )
                end = page.eval_on_selector(
                    ".message.assistant", "e => e.getBoundingClientRect().bottom"
                )
                shots.append((Image.open(io.BytesIO(page.screenshot())), int(end) + 16))
            browser.close()
        stack(shots, args.out)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
