"""billion: compare, fine-tune and speed up ~1B-parameter open language models.

Packages, each depending only on those before it: core (registry, loading, generation, settings),
store (SQLite), arena, spec (speculative decoding), train (LoRA), bench; then billion.context (the
AppContext that ties them together), and on top the ui (Gradio) and the commands (CLI).
"""

from billion.core.errors import BillionError

__all__ = ["BillionError"]
__version__ = "0.1.0"
