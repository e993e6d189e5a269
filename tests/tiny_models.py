"""Tiny random models and an offline tokenizer, built in the tests (no hub, no downloads)."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM,
                          PreTrainedTokenizerFast)

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "def add(a, b):\n    return a + b\n",
    "User: hello there\nAssistant: Hello! How can I help you today?",
    "Speculative decoding drafts tokens with a small model and verifies them with a large one.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
    "A quick brown fox jumps over the lazy dog while the cat sleeps in the sun.",
]


def build_tokenizer(vocab_size: int = 256) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a few sentences, with a ChatML template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", bos_token="<|im_start|>")
    fast.chat_template = CHATML
    return fast


def tiny_llama(vocab_size: int, seed: int = 0, layers: int = 2, hidden: int = 64) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, eos_token_id=2, bos_token_id=1, pad_token_id=0,
                         tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


def tiny_neox(vocab_size: int, seed: int = 0, layers: int = 2, hidden: int = 64) -> GPTNeoXForCausalLM:
    torch.manual_seed(seed)
    config = GPTNeoXConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2,
                           num_hidden_layers=layers, num_attention_heads=4, max_position_embeddings=512,
                           eos_token_id=2, bos_token_id=1, pad_token_id=0)
    return GPTNeoXForCausalLM(config).eval()


def save_tiny(directory: Path, arch: str = "llama", seed: int = 0) -> Path:
    """Write a tiny model + tokenizer as a local model directory, loadable by path."""
    tokenizer = build_tokenizer()
    build = tiny_llama if arch == "llama" else tiny_neox
    model = build(len(tokenizer), seed=seed)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
