"""Drive the demo page in Debian's Chromium with Playwright, as a person does: the tests and benchmarks/ use it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
# Strokes of hand-drawn digits in the unit square (x right, y down), each a polyline.
STROKES: dict[int, list[list[tuple[float, float]]]] = {
    1: [[(0.5, 0.1), (0.5, 0.9)]],
    7: [[(0.2, 0.15), (0.8, 0.15), (0.45, 0.9)]],
    4: [[(0.6, 0.1), (0.15, 0.6), (0.85, 0.6)], [(0.6, 0.1), (0.6, 0.9)]],
    0: [[(0.5, 0.1), (0.2, 0.3), (0.2, 0.7), (0.5, 0.9), (0.8, 0.7), (0.8, 0.3), (0.5, 0.1)]],
}


@contextmanager
def page(url: str, *, width: int = 1280, height: int = 1000) -> Iterator[Any]:
    """A fresh page on `url` whose sketchpad has rendered."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            tab = browser.new_page(viewport={"width": width, "height": height})
            tab.goto(url)
            tab.locator("#sketchpad canvas").first.wait_for(state="visible", timeout=60_000)
            yield tab
        finally:
            browser.close()


def draw(tab: Any, digits: list[int]) -> None:
    """Draw `digits` side by side across the sketchpad's drawable square."""
    box = tab.locator("#sketchpad canvas").first.bounding_box()
    assert box is not None
    side = 0.8 * min(box["width"], box["height"])  # the drawable square sits centred in the canvas element
    left, top = box["x"] + (box["width"] - side) / 2, box["y"] + (box["height"] - side) / 2
    width = side / len(digits)
    for slot, digit in enumerate(digits):
        for stroke in STROKES[digit]:
            points = [(left + (slot + 0.15 + 0.7 * x) * width, top + (0.1 + 0.8 * y) * side) for x, y in stroke]
            tab.mouse.move(*points[0])
            tab.mouse.down()
            for x, y in points[1:]:
                tab.mouse.move(x, y, steps=12)
            tab.mouse.up()


def answer(tab: Any) -> str:
    """The number the page shows ("" while it shows none)."""
    number = tab.locator("#answer .number")
    if not number.count():
        return ""
    text = number.first.inner_text()
    return text.replace("unsure", "").strip()


def clear(tab: Any, *, toolbar: bool) -> None:
    """The page's Clear button, or the sketchpad toolbar's own "Clear canvas"."""
    if toolbar:
        tab.locator('#sketchpad button[aria-label="Clear canvas"]').click()
    else:
        tab.locator("#clear").click()


def wait_for_answer(tab: Any, expected: str, timeout: float = 30) -> str:
    """The page's answer once it equals `expected`, or whatever it shows after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answer(tab) == expected:
            break
        tab.wait_for_timeout(100)
    return answer(tab)
