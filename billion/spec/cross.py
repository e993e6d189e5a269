"""Universal assisted generation: a draft model whose tokenizer differs from the target's drafts text.

Each round the committed text (prompt + answer so far, as the target's tokens spell it) is
tokenized for the draft, the draft continues it greedily, and its new text is tokenized back for
the target to verify. The draft keeps a KV cache over the longest prefix of its tokens that is still
true, so a round re-reads only what changed. Drafting is greedy, so each proposal is a fixed
function of the context: a one-hot q, which keeps speculative sampling exact at any temperature.
"""

from __future__ import annotations

import torch

from billion.core.kv_cache import new_cache
from billion.core.sampling import SamplingSettings
from billion.spec.source import Draft, forward_logits

#: target tokens of committed text re-tokenized together with the draft's text, so that a word
#: split across the boundary tokenizes as the target would tokenize it
TAIL_TOKENS = 4
#: draft tokens decoded together with the new ones, so that pieces decode with their spaces
DECODE_WINDOW = 8


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class TextDraft:
    """A draft model with its own tokenizer, drafting for the target through text."""

    deterministic = True

    def __init__(self, model, draft_tokenizer, target_tokenizer, vocab_size: int, name: str,
                 eos_ids: frozenset[int] = frozenset()):
        self.model = model
        self.draft_tokenizer, self.target_tokenizer = draft_tokenizer, target_tokenizer
        self.vocab_size = vocab_size
        self.name = name
        self.device = next(model.parameters()).device
        #: the draft's end-of-text ids: drafting stops there
        self.eos_ids = eos_ids | {i for i in (draft_tokenizer.eos_token_id,) if i is not None}
        self.cache = new_cache(model.config)
        self.seen: list[int] = []
        self.prompt_text, self.prompt_len = "", 0

    def start(self, prompt_ids: list[int]) -> None:
        self.prompt_text = self.target_tokenizer.decode(prompt_ids, skip_special_tokens=False)
        self.prompt_len = len(prompt_ids)
        self.cache = new_cache(self.model.config)
        self.cache.activate_past_recording()  # sliding-window layers must be able to roll back
        self.seen = []

    def draft_ids(self, context: list[int]) -> list[int]:
        """The committed text as the draft's tokenizer spells it (with its BOS where it uses one)."""
        text = self.prompt_text + self.target_tokenizer.decode(context[self.prompt_len:],
                                                               skip_special_tokens=False)
        bos = self.draft_tokenizer.bos_token
        add_special = not (bos and text.startswith(bos))
        return self.draft_tokenizer(text, add_special_tokens=add_special)["input_ids"]

    def _sync(self, ids: list[int]) -> torch.Tensor:
        """Make the cache hold ids (keeping the still-true prefix); logits after the last one."""
        keep = min(common_prefix(self.seen, ids), len(ids) - 1)
        if self.seen:  # crop(0) too: it trims sliding-window layers back to their window
            self.cache.crop(-(len(self.seen) - keep))
        self.seen = self.seen[:keep]
        return self._feed(ids[keep:])

    def _feed(self, ids: list[int]) -> torch.Tensor:
        logits = forward_logits(self.model, ids, self.cache, self.device, keep=1)
        self.seen.extend(ids)
        return logits[-1]

    def to_target(self, context: list[int], new_text: str) -> list[int]:
        """The target's tokens for new_text written after the committed context."""
        tail = context[-TAIL_TOKENS:]
        tail_text = self.target_tokenizer.decode(tail, skip_special_tokens=False)
        ids = self.target_tokenizer(tail_text + new_text, add_special_tokens=False)["input_ids"]
        if ids[:len(tail)] == tail:
            return ids[len(tail):]
        return self.target_tokenizer(new_text, add_special_tokens=False)["input_ids"]

    def propose(self, context: list[int], k: int, settings: SamplingSettings,
                generator: torch.Generator | None) -> Draft:
        ids = self.draft_ids(context)
        logits = self._sync(ids)
        drafted: list[int] = []
        for step in range(k):
            token = int(logits.argmax(-1))
            if token in self.eos_ids:
                break
            drafted.append(token)
            if step < k - 1:
                logits = self._feed([token])
        if not drafted:
            return Draft(())
        window = ids[-DECODE_WINDOW:]
        before = self.draft_tokenizer.decode(window, skip_special_tokens=False)
        new_text = self.draft_tokenizer.decode(window + drafted, skip_special_tokens=False)[len(before):]
        tokens = self.to_target(context, new_text)[:k]
        valid = next((i for i, t in enumerate(tokens) if t >= self.vocab_size), len(tokens))
        return Draft(tuple(tokens[:valid]))

    def rollback(self, valid: int) -> None:
        pass  # the next round's _sync keeps only the prefix that is still true
