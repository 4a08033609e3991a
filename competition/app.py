"""`make demo`: a Gradio sketchpad that reads what people draw, backed by the fold ensemble."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .ensemble import Ensemble
from .errors import UserError
from .recognize import UNSURE_BELOW, Reading, recognize

log = logging.getLogger(__name__)

HELP = "Draw a digit (or several, side by side) with the mouse or a finger; the answer updates as you draw."
# Gradio 6 opens, and its toolbar's "Clear canvas" leaves, the sketchpad with no tool selected ("select the draw tool
# to start"), so the next stroke draws nothing. Select the brush whenever the editor is shown or cleared (retrying
# until it has rendered), and at the start of any stroke on the canvas while no tool is selected: a stroke begun right
# after a clear would otherwise beat the deferred selection. The page's Clear button uses the editor's own clear, so
# nothing waits on the server. A selected tool's button has the class "highlight" in Gradio 6.
SELECT_BRUSH = """() => {
  const tool = (name) => document.querySelector(`#sketchpad button[aria-label="${name}"]`);
  const chosen = (button) => button && (button.classList.contains('highlight') || button.classList.contains('selected'));
  const pick = (tries) => {
    const brush = tool('Brush');
    if (brush && !chosen(brush)) { brush.click(); }
    if (!brush && tries > 0) { setTimeout(() => pick(tries - 1), 100); }
  };
  window.selectBrush = () => { pick(50); setTimeout(() => pick(5), 150); };
  document.addEventListener('click', (event) => {
    if (event.target.closest('#sketchpad button[aria-label="Clear canvas"]')) { setTimeout(window.selectBrush, 0); }
  }, true);
  document.addEventListener('pointerdown', (event) => {
    const brush = tool('Brush');
    if (!event.isTrusted || !brush || !event.target.closest('#sketchpad') || event.target.closest('button')
        || ['Brush', 'Erase', 'Pan'].some((name) => chosen(tool(name)))) { return; }
    // with no tool, an overlay covers the canvas: select the brush, then hand the press to the canvas it uncovers
    event.stopPropagation();
    brush.click();
    const press = new PointerEvent('pointerdown', event);
    requestAnimationFrame(() => {
      const under = document.elementFromPoint(event.clientX, event.clientY);
      if (under && under.tagName === 'CANVAS') { under.dispatchEvent(press); }
    });
  }, true);
  window.selectBrush();
}"""
CLEAR = """() => {
  const trash = document.querySelector('#sketchpad button[aria-label="Clear canvas"]');
  if (trash) { trash.click(); }
  if (window.selectBrush) { window.selectBrush(); }
}"""
CSS = """
#answer .number { font-size: 3.2rem; font-weight: 700; line-height: 1.1; letter-spacing: 0.08em; }
#answer .unsure { font-size: 1rem; font-weight: 600; color: #b45309; margin-left: 0.5rem; letter-spacing: 0; }
#answer .hint { font-size: 1.1rem; opacity: 0.7; }
#detail table { width: 100%; border-collapse: collapse; border: 0; }
#detail td { padding: 0.2rem 0.5rem; vertical-align: middle; border: 0; border-bottom: 1px solid rgba(128, 128, 128, 0.25); }
#detail td:first-child { width: 64px; }
#detail img { image-rendering: pixelated; width: 56px; height: 56px; }
"""


def _png_data_uri(image: np.ndarray) -> str:
    """A (28, 28) uint8 image as an inline PNG: nothing is written to disk, so concurrent requests share no file."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def describe(reading: Reading) -> tuple[str, str, dict[str, Any]]:
    """Page outputs: the answer (the number, large, marked when unsure), the detail per digit, and the JSON
    that `predict --json` prints (for API clients)."""
    if not reading.digits:
        return f'<div class="hint">{HELP}</div>', "", reading.to_json()
    unsure = any(d.unsure for d in reading.digits)
    mark = f'<span class="unsure" title="below {UNSURE_BELOW:.0%} confidence">unsure</span>' if unsure else ""
    answer = f'<div class="number">{reading.number}{mark}</div>'
    rows = []
    for d in reading.digits:
        top = ", ".join(f"{label}: {p:.0%}" for label, p in d.top)
        rows.append(f'<tr><td><img alt="what the models saw" src="{_png_data_uri(d.image)}"></td>'
                    f"<td><b>{d.label}</b>{' (unsure)' if d.unsure else ''}</td><td>top 3: {top}</td>"
                    f"<td>{d.agree}/{d.models} models agree</td></tr>")
    return answer, f"<table>{''.join(rows)}</table>", reading.to_json()


class OnlyUploadedFiles:
    """ASGI middleware: an API call may name only files that were uploaded to this server.

    Gradio lets a client name a file by path in its JSON (`{"path": ..., "meta": {"_type": "gradio.FileData"}}`) and
    copies it into its cache before the app's function runs, from where it can be downloaded; a path outside the upload
    folder (any file of the server's, or a URL to fetch) is refused here, before Gradio reads the request.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], max_body: int = 16 * 2**20) -> None:
        self.app, self.max_body = app, max_body
        self.uploads = os.path.realpath(_upload_folder())

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/").endswith("/upload"):
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                await _refuse(send, 413, "request too large")
                return
        foreign = self.foreign_paths(body)
        if foreign:
            log.warning(f"demo: refused a request naming {foreign[0]!r}, which was not uploaded here")
            await _refuse(send, 400, "only files uploaded to this server can be named")
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def foreign_paths(self, body: bytes) -> list[str]:
        """The `path` values in a JSON body that are not files in the upload folder."""
        try:
            data = json.loads(body) if body else None
        except ValueError:
            return []  # not JSON: Gradio refuses it itself
        found: list[str] = []
        stack = [data]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                path = item.get("path")
                if path is not None and not (isinstance(path, str) and self._uploaded(path)):
                    found.append(str(path))
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
        return found

    def _uploaded(self, path: str) -> bool:
        return os.path.commonpath([self.uploads, os.path.realpath(path)]) == self.uploads and "://" not in path


def _upload_folder() -> str:
    from gradio.utils import get_upload_folder

    return str(get_upload_folder())


async def _refuse(send: Callable[[dict[str, Any]], Awaitable[None]], status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def build_app(ensemble: Ensemble) -> Any:
    import gradio as gr

    def predict(value: dict[str, Any] | None) -> tuple[str, str, dict[str, Any]]:
        return describe(recognize(value, ensemble) if value is not None else Reading())

    with gr.Blocks(title="Draw a digit", analytics_enabled=False) as demo:  # no phoning home
        gr.Markdown("# Draw a digit")
        answer = gr.HTML(describe(Reading())[0], elem_id="answer")
        pad = gr.Sketchpad(label="canvas", type="numpy", image_mode="RGBA", canvas_size=(400, 400), height=440,
                           transforms=(), layers=False, fixed_canvas=True,
                           brush=gr.Brush(default_size=18, colors=["#000000", "#ffffff", "#1f4fd1"], color_mode="defaults"),
                           elem_id="sketchpad")
        clear = gr.Button("Clear", elem_id="clear")
        detail = gr.HTML("", elem_id="detail")
        reading = gr.JSON(visible=False)
        gr.Markdown(f"Models: `{ensemble.source}` ({len(ensemble.members)}). A digit below {UNSURE_BELOW:.0%} "
                    f"confidence is marked unsure.")
        demo.load(None, js=SELECT_BRUSH)
        pad.change(predict, inputs=pad, outputs=[answer, detail, reading], trigger_mode="always_last",
                   show_progress="hidden", api_name="predict")
        clear.click(None, js=CLEAR)  # in the browser only: the pad's own change event then clears the answer
    return demo


def serve(*, models: Path, host: str, port: int, share: bool) -> None:
    import gradio as gr
    from starlette.middleware import Middleware

    ensemble = Ensemble.load(models)
    log.info(f"demo: {len(ensemble.members)} model(s) from {models}; http://{host}:{port}")
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # system fonts: no font CDN
    try:
        build_app(ensemble).launch(server_name=host, server_port=port, share=share, theme=theme, css=CSS, quiet=True,
                                   app_kwargs={"middleware": [Middleware(OnlyUploadedFiles)]})
    except OSError as exc:  # Gradio's "Cannot find empty port", or a host this machine does not have
        raise UserError(f"cannot serve on {host}:{port} (in use by another program, or not an address of this "
                        f"machine); choose another with --port N or --host H") from exc
