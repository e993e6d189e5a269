"""Page-wide fixes to Gradio's defaults (issue 14, fix 13): table headers, long block labels, and a
status text Gradio 6 leaves untranslated. app.py passes both to launch()."""

from __future__ import annotations

import gradio as gr

PAGE_CSS = """
/* Gradio sizes columns from the first rows, so a column of short or empty cells got a 32px header
   written one letter per line; a header now keeps its words on one line and sets its width. */
th.header-cell { width: auto !important; min-width: 0 !important; max-width: none !important; }
th.header-cell .header { white-space: nowrap; }
/* A block label floats over the Chatbot's own buttons: it wraps short of them instead of being
   covered (the Arena's revealed names are long). */
[data-testid=block-label].float { max-width: calc(100% - 7.5rem); white-space: normal; }
/* A dropdown's chosen text ran on under its arrow on a phone: it stops (with "…") short of it. */
.wrap .secondary-wrap input[role=combobox] { padding-right: 1.75rem !important; text-overflow: ellipsis; }
"""

#: Gradio 6's status tracker announces `common.complete` to screen readers, a key its English
#: strings lack, so the raw key was read out after every event.
PAGE_I18N = gr.I18n(en={"common.complete": "Complete"})
