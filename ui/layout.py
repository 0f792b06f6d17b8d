"""The whole app: a header with the status line, one shared image with examples, and the tabs."""

from __future__ import annotations

import gradio as gr

from . import (
    about_tab,
    ask_tab,
    batch_tab,
    caption_tab,
    compare_tab,
    controls,
    drawing,
    match_tab,
    rollout_api,
    search_tab,
    tools,
    zeroshot_tab,
)
from .services import Services
from .status import status_text

INTRO = """\
# BLIP Explorer
Caption an image, ask about it, score texts against it and classify it zero-shot with Salesforce's BLIP,
and see **where the model looked** for every word. Upload a picture once (or take one with the webcam,
or draw one on the sketchpad): those four tabs share it.
Search and Batch take many pictures of your own.
"""

# Text examples per tab, for the shapes world (the offline demo model) and for photographs.
ASK_EXAMPLES = [["what colour is the circle?"], ["what shape is at the top?"], ["how many shapes are there?"],
                ["what is the cat doing?"]]  # fmt: skip
MATCH_EXAMPLES = [
    ["a small red circle in the centre\na small blue circle in the centre\na small red star in the centre"],
    ["a cat lying on a blanket\na cup of coffee\na rocket taking off"],
]
# Gradio's delete_cache (how often, older than): two hours, the age at which ui/collection.py also takes a
# work folder to belong to a session that has ended (a Search index may still open its uploads until then).
CACHE_SECONDS = (30 * 60, 2 * 60 * 60)
ZEROSHOT_EXAMPLES = [["circle, square, triangle, star", "a {}"], ["red, green, blue, yellow", "a {} shape"],
                     ["cat, dog, coffee, rocket, astronaut", "a picture of a {}"]]  # fmt: skip


def build_app(services: Services) -> gr.Blocks:
    """Build the Blocks app over ``services`` (nothing is loaded until a request needs it)."""
    # Uploads, webcam photos and drawings live only in Gradio's temporary cache: files older than two
    # hours are deleted every half hour, and the whole cache when the server restarts (examples are kept).
    with gr.Blocks(title="BLIP Explorer", analytics_enabled=False, delete_cache=CACHE_SECONDS) as app:
        gr.Markdown(INTRO)
        status = gr.Markdown(status_text(services), elem_id="status")

        def after(event) -> None:
            """After every task, refresh the status line (a model may have loaded, or the demo stepped in)."""
            event.then(lambda: status_text(services), outputs=status, api_visibility="private", queue=False)

        with gr.Row():
            # The handlers open the upload themselves, to say what is wrong with a bad file.
            image = controls.image_path(
                image_mode=None,  # keep the file as uploaded: the engine converts colour modes itself
                sources=["upload", "webcam", "clipboard"],
                webcam_options=gr.WebcamOptions(mirror=False),  # the photo as the camera saw it, upright
                format="png",  # a drawing handed back as a picture stays lossless
                label="Image (shared by every tab)",
                height=320,
                elem_id="shared-image",
            )
            with gr.Column():
                drawing.build(image)
                for key, (title, paths) in services.examples.items():
                    gr.Examples(
                        [[p] for p in paths],
                        inputs=[image],
                        label=title,
                        examples_per_page=8,
                        elem_id=f"examples-{key}",
                    )
        with gr.Tabs():
            with gr.Tab("Caption", id="caption", elem_id="caption-panel"):
                caption_tab.build(services, image, after)
            with gr.Tab("Ask", id="ask", elem_id="ask-panel"):
                ask_tab.build(services, image, after, ASK_EXAMPLES)
            with gr.Tab("Match", id="match", elem_id="match-panel"):
                match_tab.build(services, image, after, MATCH_EXAMPLES)
            with gr.Tab("Zero-shot", id="zeroshot", elem_id="zeroshot-panel"):
                zeroshot_tab.build(services, image, after, ZEROSHOT_EXAMPLES)
            with gr.Tab("Compare", id="compare", elem_id="compare-panel"):
                compare_tab.build(services, image, after)
            with gr.Tab("Search", id="search", elem_id="search-panel"):
                search_tab.build(services, after)
            with gr.Tab("Batch", id="batch", elem_id="batch-panel"):
                batch_tab.build(services, after)
            with gr.Tab("About", id="about", elem_id="about-panel"):
                about_tab.build()
        tools.build(services)  # text-first endpoints for assistants (MCP) and programs; not on the page
        rollout_api.build(services)  # /rollout for programs; the viewer shows it on the page
        app.load(lambda: status_text(services), outputs=status, api_visibility="private", queue=False)
    tools.keep_tabs_out_of_mcp(app)
    return app
