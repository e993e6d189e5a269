"""Speculative decoding: the draft-and-verify engine, draft sources, and the race against plain decoding."""
