"""Tiny stand-ins for the four compared hub repos, file for file, and a Hugging Face cache built from them.

Each repo has the compared model's architecture class (LlamaForCausalLM, StableLmForCausalLM,
GPTNeoXForCausalLM) with tiny random weights, a small tokenizer of the same tokenizer class and
special tokens, and the model's real chat template, copied from a public copy of its
tokenizer_config.json (sources next to each template). Weights are random: tests check the code
path (resolve, cache, template, generate, train, battle), never what the models say.

`write_cache` lays the files out exactly as huggingface_hub does
(`models--ORG--NAME/{blobs,snapshots/<commit>,refs}`), so the loader reads them through the same
code a Space runs; tests/fake_hub.py serves the same files over HTTP.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from billion.core.registry import COMPARED, resolve


CORPUS = ["The capital of France is Paris. The capital of Italy is Rome.",
          "hello there, how are you today? I am fine, thank you.",
          "def add(a, b):\n    return a + b\n", "A quick brown fox jumps over the lazy dog."] * 4

# TinyLlama-1.1B-Chat-v1.0 (Zephyr format). Source: tokenizer_config.json of
# https://huggingface.co/TinyLlama/TinyLlama-1.1B-Chat-v1.0 as copied verbatim in
# https://huggingface.co/blockblockblock/TinyLlama-1.1B-Chat-v1.0-bpw2.5-exl2/blob/9c900f6292649e7151ba7ed60a3b0a08e179f49a/tokenizer_config.json
TINYLLAMA_TEMPLATE = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")

# Llama 3.2 Instruct (header tokens, dated system turn). Llama-3.2-1B-Instruct's own file is gated;
# this is the Llama 3.2 Instruct template as published in public copies, e.g. the chat_template.jinja
# in https://huggingface.co/DatPySci/RLVR-SGDM-Gap/commit/d7103ea412515bb93fd0b40275591793f160882d.diff
# (a Llama-3.2-3B-Instruct fine-tune) and llama-stack's meta-llama template; its output matches what
# Meta shows for 1B in https://huggingface.co/meta-llama/Llama-3.2-1B-Instruct/discussions/14.
LLAMA32_TEMPLATE = (Path(__file__).parent / "data" / "llama3.2_chat_template.jinja").read_text()

# StableLM 2 (ChatML). Source: stabilityai/stablelm-2-1_6b commit 507254d "fix: add chat template to
# tokenizer config" (https://huggingface.co/stabilityai/stablelm-2-1_6b/tree/507254d7bdc475c40ae7fd24df27e4bbeded0500),
# copied verbatim in https://huggingface.co/plaguss/stablelm-2-1_6-sft-disticoder-v01/blob/5d8bd10a01b24af347cb70f5334ccb37ba0f6950/tokenizer_config.json.
# The gated chat repo's own tokenizer_config.json could not be read here.
STABLELM_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
                     "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
                     "{{ '<|im_start|>assistant\n' }}{% endif %}")

FAKE_MAIN: dict[str, str] = {}  # alias -> a stand-in commit, for a model that follows main
PYTHIA_STEP = ("step3000", "5" * 40)   # one training checkpoint branch, PyTorch .bin only


@dataclass
class Repo:
    repo_id: str
    commit: str
    files: dict[str, bytes]
    #: branch -> commit
    refs: dict[str, str] = field(default_factory=dict)
    #: other commits (e.g. a checkpoint branch) -> their files
    others: dict[str, dict[str, bytes]] = field(default_factory=dict)
    gated: bool = False

    def tree(self, commit: str) -> dict[str, bytes]:
        return self.files if commit == self.commit else self.others[commit]


def etag(name: str, data: bytes) -> str:
    """The hub's etag: sha256 for LFS files (weights), the git blob sha1 for the rest."""
    if name.endswith((".safetensors", ".bin")):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _bpe(specials: list[str], sentencepiece: bool, vocab: int = 320) -> Tokenizer:
    if sentencepiece:  # Llama 2 style: "▁" for spaces, byte fallback
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                         decoders.Fuse(), decoders.Strip(" ", 1, 0)])
        alphabet = sorted(set("".join(CORPUS).replace(" ", "▁")))
        extra = [f"<0x{i:02X}>" for i in range(256)]
        text = [s.replace(" ", "▁") for s in CORPUS]
    else:  # GPT-2 style byte-level BPE (Llama 3, StableLM 2, Pythia)
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet, extra, text = pre_tokenizers.ByteLevel.alphabet(), [], CORPUS
    trainer = trainers.BpeTrainer(vocab_size=vocab + len(extra), special_tokens=specials + extra,
                                  initial_alphabet=alphabet)
    tok.train_from_iterator(text, trainer)
    return tok


def _tokenizer_files(tok: Tokenizer, config: dict, bos: str | None = None) -> dict[str, bytes]:
    if bos:  # the tokenizer adds BOS by default, as Llama's do
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))])
    specials = {k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token") if config.get(k)}
    return {"tokenizer.json": tok.to_str().encode(), "tokenizer_config.json": json.dumps(config, indent=2).encode(),
            "special_tokens_map.json": json.dumps(specials, indent=2).encode()}


def _model_files(model, generation: dict, bin_weights: bool = False) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        out = {name: (Path(tmp) / name).read_bytes() for name in ("config.json",)}
        if bin_weights:  # old checkpoint branches ship PyTorch pickles only
            buffer = io.BytesIO()
            torch.save(model.state_dict(), buffer)
            out["pytorch_model.bin"] = buffer.getvalue()
        else:
            out["model.safetensors"] = (Path(tmp) / "model.safetensors").read_bytes()
    out["generation_config.json"] = json.dumps(generation, indent=2).encode()
    return out


def _small(**kwargs):
    torch.manual_seed(0)
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=256, **kwargs)


def tinyllama_files() -> dict[str, bytes]:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _bpe(["<unk>", "<s>", "</s>"], sentencepiece=True)
    config = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
              "unk_token": "<unk>", "pad_token": "</s>", "legacy": False, "model_max_length": 2048,
              "tokenizer_class": "LlamaTokenizer", "chat_template": TINYLLAMA_TEMPLATE}
    model = LlamaForCausalLM(LlamaConfig(vocab_size=tok.get_vocab_size(), num_key_value_heads=2,
                                         bos_token_id=1, eos_token_id=2, **_small()))
    return {**_tokenizer_files(tok, config, bos="<s>"),
            **_model_files(model, {"bos_token_id": 1, "eos_token_id": 2, "max_length": 2048})}


def llama32_files() -> dict[str, bytes]:
    from transformers import LlamaConfig, LlamaForCausalLM

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|eot_id|>", "<|python_tag|>"]
    tok = _bpe(specials, sentencepiece=False)
    ids = {t: tok.token_to_id(t) for t in specials}
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "model_max_length": 131072,
              "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": LLAMA32_TEMPLATE,
              "model_input_names": ["input_ids", "attention_mask"]}
    eos = [ids["<|end_of_text|>"], ids["<|eot_id|>"]]
    model = LlamaForCausalLM(LlamaConfig(vocab_size=tok.get_vocab_size(), num_key_value_heads=2,
                                         bos_token_id=ids["<|begin_of_text|>"], eos_token_id=eos,
                                         tie_word_embeddings=True, **_small()))
    return {**_tokenizer_files(tok, config, bos="<|begin_of_text|>"),
            **_model_files(model, {"bos_token_id": ids["<|begin_of_text|>"], "eos_token_id": eos})}


def stablelm_files() -> dict[str, bytes]:
    from transformers import StableLmConfig, StableLmForCausalLM

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = _bpe(specials, sentencepiece=False)
    ids = {t: tok.token_to_id(t) for t in specials}
    config = {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
              "pad_token": "<|endoftext|>", "model_max_length": 4096, "tokenizer_class": "GPT2Tokenizer",
              "add_prefix_space": False, "chat_template": STABLELM_TEMPLATE}
    eos = [ids["<|endoftext|>"], ids["<|im_end|>"]]
    model = StableLmForCausalLM(StableLmConfig(vocab_size=tok.get_vocab_size(), num_key_value_heads=4,
                                               bos_token_id=eos[0], eos_token_id=eos, **_small()))
    return {**_tokenizer_files(tok, config), **_model_files(model, {"bos_token_id": eos[0], "eos_token_id": eos})}


def pythia_files(bin_weights: bool = False) -> dict[str, bytes]:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    tok = _bpe(["<|endoftext|>", "<|padding|>"], sentencepiece=False)
    config = {"add_prefix_space": False, "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
              "unk_token": "<|endoftext|>", "tokenizer_class": "GPTNeoXTokenizer"}  # no chat template
    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=tok.get_vocab_size(), bos_token_id=0,
                                             eos_token_id=0, **_small()))
    return {**_tokenizer_files(tok, config), **_model_files(model, {"bos_token_id": 0, "eos_token_id": 0},
                                                            bin_weights=bin_weights)}


def build_repos() -> dict[str, Repo]:
    """alias -> Repo, at the commits the registry pins (or a stand-in for main)."""
    build = {"tinyllama": tinyllama_files, "llama3.2-1b": llama32_files, "stablelm": stablelm_files,
             "pythia-1b": pythia_files}
    repos = {}
    for alias in COMPARED:
        spec = resolve(alias)
        commit = spec.source.revision or FAKE_MAIN[alias]
        repos[alias] = Repo(spec.hub_id, commit, build[alias](), refs={"main": commit}, gated=spec.gated)
    step, step_commit = PYTHIA_STEP
    repos["pythia-1b"].others[step_commit] = pythia_files(bin_weights=True)
    repos["pythia-1b"].refs[step] = step_commit
    return repos


def write_snapshot(cache: Path, repo_id: str, commit: str, files: dict[str, bytes]) -> Path:
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (storage / "blobs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = storage / "blobs" / etag(name, data)
        blob.write_bytes(data)
        link = snapshot / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


def write_cache(cache: Path, repos: dict[str, Repo]) -> Path:
    """The standard hub cache layout for every repo: blobs, snapshots (links) and refs."""
    for repo in repos.values():
        write_snapshot(cache, repo.repo_id, repo.commit, repo.files)
        for commit, files in repo.others.items():
            write_snapshot(cache, repo.repo_id, commit, files)
        refs = cache / ("models--" + repo.repo_id.replace("/", "--")) / "refs"
        refs.mkdir(exist_ok=True)
        for branch, commit in repo.refs.items():
            (refs / branch).write_text(commit)
    return cache
