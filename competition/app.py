"""`make demo`: a Gradio sketchpad that reads what people draw, backed by the fold ensemble."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .ensemble import Ensemble
from .errors import UserError
from .recognize import UNSURE_BELOW, Reading, recognize

log = logging.getLogger(__name__)

SELECT_BRUSH = """() => { let tries = 0; const pick = () => {
  const brush = document.querySelector('#sketchpad button[aria-label="Brush"]');
  if (brush) { brush.click(); } else if (tries++ < 50) { setTimeout(pick, 100); } }; pick(); }"""
HELP = "Draw a digit (or several, side by side) with the mouse or a finger."


def describe(reading: Reading) -> tuple[str, dict[str, float], str, np.ndarray | None]:
    """Page outputs: the number read, top-3 of the main digit, a markdown summary, the 28x28 image(s) seen."""
    if not reading.digits:
        return "", {}, "### Draw a digit\n" + HELP, None
    main = reading.main
    assert main is not None
    lines = []
    if len(reading.digits) > 1:
        lines.append(f"## Number: {reading.number}")
    for d in reading.digits:
        top = ", ".join(f"{label} ({p:.0%})" for label, p in d.top)
        verdict = f"**{d.label}**" + (" — unsure, try drawing it larger or clearer" if d.unsure else "")
        lines.append(f"- {verdict}: {d.agree}/{d.models} fold models agree; top 3: {top}")
    seen = np.concatenate([np.pad(d.image, 2, constant_values=64) for d in reading.digits], axis=1)
    seen = np.kron(seen, np.ones((4, 4), np.uint8))  # 4x, nearest: pixels stay visible
    return reading.number, {str(label): p for label, p in main.top}, "\n".join(lines), seen


def build_app(ensemble: Ensemble) -> Any:
    import gradio as gr

    def predict(value: dict[str, Any] | None) -> tuple[str, dict[str, float], str, np.ndarray | None]:
        return describe(recognize(value, ensemble)) if value is not None else describe(Reading())

    with gr.Blocks(title="Draw a digit", analytics_enabled=False) as demo:  # no phoning home
        gr.Markdown(f"# Draw a digit\n{HELP} Predictions update as you draw. Models: `{ensemble.source}` "
                    f"({len(ensemble.members)} fold model(s)); a digit below {UNSURE_BELOW:.0%} confidence is marked unsure.")
        with gr.Row():
            with gr.Column():
                pad = gr.Sketchpad(label="canvas", type="numpy", image_mode="RGBA", canvas_size=(400, 400), height=460,
                                   transforms=(), layers=False, fixed_canvas=True,
                                   brush=gr.Brush(default_size=18, colors=["#000000", "#ffffff", "#1f4fd1"], color_mode="defaults"),
                                   elem_id="sketchpad")
                clear = gr.Button("Clear", elem_id="clear")
            with gr.Column():
                number = gr.Textbox(label="read as", elem_id="number", interactive=False)
                result = gr.Markdown("### Draw a digit\n" + HELP, elem_id="result")
                top3 = gr.Label(num_top_classes=3, label="top 3", elem_id="top3")
                seen = gr.Image(label="what the models see (28x28)", image_mode="L", height=140, elem_id="seen",
                                interactive=False)
        # Gradio 6 opens (and clears) the sketchpad with no tool selected ("select the draw tool to start"):
        # pick the brush for the user, retrying until the editor has rendered.
        demo.load(None, js=SELECT_BRUSH)
        pad.change(predict, inputs=pad, outputs=[number, top3, result, seen], trigger_mode="always_last",
                   show_progress="hidden", api_name="predict")
        clear.click(lambda: (None, "", {}, "### Draw a digit\n" + HELP, None), outputs=[pad, number, top3, result, seen],
                    api_visibility="private").then(None, js=SELECT_BRUSH)  # a cleared editor forgets its tool too
    return demo


def serve(*, models: Path, host: str, port: int, share: bool) -> None:
    import gradio as gr

    ensemble = Ensemble.load(models)
    log.info(f"demo: {len(ensemble.members)} model(s) from {models}; http://{host}:{port}")
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # system fonts: no font CDN
    try:
        build_app(ensemble).launch(server_name=host, server_port=port, share=share, theme=theme, quiet=True)
    except OSError as exc:  # Gradio's "Cannot find empty port", or a host this machine does not have
        raise UserError(f"cannot serve on {host}:{port} (in use by another program, or not an address of this "
                        f"machine); choose another with --port N or --host H") from exc
