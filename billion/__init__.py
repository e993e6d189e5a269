"""billion: compare, fine-tune and speed up ~1B-parameter open language models."""

from billion.core.errors import BillionError

__all__ = ["BillionError"]
__version__ = "0.1.0"
