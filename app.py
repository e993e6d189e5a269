"""billion: compare, fine-tune and speed up ~1B-parameter open language models, in the browser.

`python app.py` serves the app on http://127.0.0.1:7860 (set GRADIO_SERVER_NAME=0.0.0.0 to expose
it). Importing this module builds nothing and launches nothing: `main` reads the settings from the
environment, builds the one application context and hands it to every tab.
"""

from __future__ import annotations

import os

try:  # on ZeroGPU Spaces `spaces` has to patch torch before anything initialises CUDA
    import spaces  # noqa: F401
except ImportError:
    pass

import gradio as gr

from billion.context import AppContext, build_context
from billion.core.logs import quiet_libraries
from billion.core.settings import Settings
from billion.ui.arena import build_arena_tab
from billion.ui.chat import build_chat_tab
from billion.ui.leaderboard import build_leaderboard_tab
from billion.ui.race import build_race_tab
from billion.ui.page_fixes import PAGE_CSS, PAGE_I18N
from billion.ui.trainer import build_trainer_tab

TITLE = "billion · ~1B-parameter language models, compared, fine-tuned and sped up"
CSS = """
.provenance-accepted { background: #c8f7c5; } .provenance-correction { background: #ffd6a5; }
.provenance-bonus { background: #bde0fe; } .provenance-rejected { text-decoration: line-through; color: #c00; }
.provenance-accepted, .provenance-correction, .provenance-bonus { color: #111; }
/* A dropdown's text ends before its arrow (it ran under it), with an ellipsis when cut. */
.secondary-wrap input[role="combobox"] { padding-right: 28px; text-overflow: ellipsis; }
/* Phones: a smaller title, and the Arena's prompt (and its buttons) above the empty answer panels. */
@media (max-width: 640px) {
  .prose h1 { font-size: 1.2rem !important; }
  :has(> .arena-prompt) > :first-child { order: -2; }
  .arena-prompt, .arena-prompt + .row { order: -1; }
}
"""


def build_demo(ctx: AppContext | None = None) -> gr.Blocks:
    """The app's page over ctx (default: a context built from the environment's settings)."""
    ctx = ctx or build_context()
    # Uploads and files made for download are deleted after a day (checked hourly), so a public
    # app's upload folder cannot grow without end; refused uploads go at once (billion.ui.common).
    with gr.Blocks(title="billion", delete_cache=(3600, 86400)) as demo:
        gr.Markdown(f"# {TITLE}\nEverything here runs on this machine's own hardware; "
                    "figures are measured, published ones are labelled as such.")
        # Wrapping, not a "…" menu: on a phone (390 px) three of the five tabs hid behind it.
        with gr.Tabs(overflow_behavior="wrap"):
            with gr.Tab("Chat"):
                build_chat_tab(ctx)
            with gr.Tab("Arena"):
                build_arena_tab(ctx)
            with gr.Tab("Leaderboard"):
                build_leaderboard_tab(ctx)
            with gr.Tab("Speculative race"):
                build_race_tab(ctx)
            with gr.Tab("LoRA trainer"):
                build_trainer_tab(ctx)
    return demo


def main() -> None:
    quiet_libraries()
    ctx = build_context(Settings.from_env())
    demo = build_demo(ctx)
    demo.queue(default_concurrency_limit=ctx.settings.concurrency)
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                theme=gr.themes.Soft(), css=CSS + PAGE_CSS, i18n=PAGE_I18N,
                # Only the export folder: the rest of the data folder holds unrevealed battles.
                allowed_paths=[str(ctx.settings.exports_dir)],
                # Refused while it streams in (Gradio deletes the part already written).
                max_file_size=ctx.limits.upload_bytes)


if __name__ == "__main__":
    main()
