"""Prompts for the race and its benchmark: grounded ones, whose answers copy spans of the prompt
(where prompt lookup shines), and open questions, where only a model draft can help."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: copy: the answer is mostly the prompt's text, edited (repeat, edit, rewrite, code edit);
#: grounded: the answer quotes or condenses a text; open: nothing to copy
PromptKind = Literal["copy", "grounded", "open"]


@dataclass(frozen=True)
class PromptCase:
    name: str
    kind: PromptKind
    text: str


_PASSAGE = ("The Amazon rainforest covers much of the Amazon basin of South America. The basin covers "
            "seven million square kilometres, of which five and a half million are covered by the "
            "rainforest. The region includes territory belonging to nine nations; the majority of the "
            "forest is contained within Brazil, with 60% of the rainforest, followed by Peru with 13%, "
            "and Colombia with 10%.")
_NOTICE = ("The library will be closed on Monday for the public holiday. Books due on that day can be "
           "returned on Tuesday without a fine. The reading room reopens at 9 am on Tuesday. Please "
           "ask at the front desk if you need help with renewals.")
_TYPOS = ("Our team meets evry Tuesday at ten o'clock in the big meeting room. Please bring your "
          "laptop and the weekly reprot. If you can not come, send a short mesage to the team lead "
          "before the meeting starts.")
_CODE = ("def mean(values):\n    total = 0\n    for value in values:\n        total += value\n"
         "    return total / len(values)\n")

PROMPT_CASES: tuple[PromptCase, ...] = (
    PromptCase("repeat", "copy", f"Repeat the following text exactly, word for word:\n\n{_PASSAGE}"),
    PromptCase("edit", "copy", "Rewrite this text, replacing 'rainforest' with 'jungle' and changing "
                               f"nothing else:\n\n{_PASSAGE}"),
    PromptCase("rewrite", "copy", f"Rewrite this notice in a friendlier tone, keeping every fact:\n\n{_NOTICE}"),
    PromptCase("fix typos", "copy", f"Correct the spelling mistakes in this text and return the whole "
                                    f"corrected text:\n\n{_TYPOS}"),
    PromptCase("code edit", "copy", f"Add type hints to this function and return it unchanged otherwise:"
                                    f"\n\n{_CODE}"),
    PromptCase("code rename", "copy", "Rename the variable `total` to `running_sum` in this function and "
                                      f"return the whole function:\n\n{_CODE}"),
    PromptCase("answer from text", "grounded", f"{_PASSAGE}\n\nUsing only the text above, which countries "
                                               "hold most of the forest, and what share does each hold? "
                                               "Quote the text."),
    PromptCase("summarise", "grounded", f"Summarise this text in two sentences, reusing its wording:"
                                        f"\n\n{_PASSAGE}"),
    PromptCase("open question", "open", "Why is the sky blue? Answer in three sentences."),
    PromptCase("healthy tips", "open", "Give me three tips for staying healthy."),
    PromptCase("bicycle", "open", "Explain how a bicycle works to a ten-year-old."),
    PromptCase("story", "open", "Write a short story about a cat who learns to swim."),
)

#: the race tab's examples: one of each kind of task
EXAMPLE_PROMPTS: tuple[tuple[str, str], ...] = tuple(
    (case.name, case.text) for case in PROMPT_CASES
    if case.name in ("repeat", "edit", "rewrite", "answer from text", "summarise", "code edit",
                     "open question"))
