"""The Leaderboard's "All results" table as CSV + JSON downloads (`leaderboard_export` endpoint)."""

from __future__ import annotations

import gradio as gr

from billion.bench.detail_export import write_detail_export
from billion.context import AppContext
from billion.ui.common import bind, friendly_errors


@friendly_errors
def export_detail(ctx: AppContext, family: list[str] | None, size: str, kinds: list[str] | None,
                  search: str) -> list[str]:
    """The filtered long table (every column) as [csv, json] file paths."""
    from billion.ui.leaderboard_views import filtered_board  # the tab module imports this one

    export = write_detail_export(filtered_board(ctx.store, family, size, kinds, search),
                                 ctx.settings.exports_dir)
    return [str(export.csv), str(export.json)]


def build_detail_export(ctx: AppContext, filters: list) -> None:
    """A button and the two files, under the long table; filters: family, size, kinds, search."""
    button = gr.Button("Export these results (CSV + JSON)", size="sm")
    files = gr.File(label="All results: CSV and JSON", file_count="multiple", interactive=False,
                    elem_id="leaderboard-export")
    button.click(bind(export_detail, ctx), filters, files, api_name="leaderboard_export")
