"""A tiny CLIP byte-level BPE tokenizer written from local files (no Hub download).

The vocabulary holds the 256 byte-level characters, their end-of-word (``</w>``) forms, the
results of a few merges and the two special tokens, so any text tokenizes (unknown words fall
back to single bytes) and ``CLIPTokenizer.from_pretrained(path)`` loads it offline.
"""

from __future__ import annotations

import json
from pathlib import Path

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"

# A few merges, so the tokenizer exercises the BPE path (common English and the demo class names).
_MERGES = (
    ("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("i", "n"), ("o", "n</w>"), ("e", "r</w>"),
    ("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>"), ("o", "f</w>"),
    ("p", "h"), ("ph", "o"), ("pho", "t"), ("phot", "o</w>"), ("c", "r"), ("cr", "o"), ("cro", "w"),
    ("crow", "d</w>"),
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def tiny_clip_vocab() -> tuple[dict[str, int], list[str]]:
    """The vocabulary (token -> id) and merges (``"a b"`` lines) of the tiny tokenizer."""
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    for a, b in _MERGES:
        merged = a + b
        if merged not in tokens:
            tokens.append(merged)
    tokens += [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    merges = [f"{a} {b}" for a, b in _MERGES]
    return vocab, merges


def save_tiny_clip_tokenizer(path: str | Path, model_max_length: int = 77):
    """Write a tiny ``CLIPTokenizer`` to ``path`` and return it (loaded back from the folder).

    ``len(tokenizer)`` is the vocabulary size a matching text model needs; the BOS/EOS ids are
    ``tokenizer.bos_token_id`` / ``tokenizer.eos_token_id`` (the pad token is EOS, as in CLIP).
    """
    from transformers import CLIPTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab, merges = tiny_clip_vocab()
    (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tok = CLIPTokenizer(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges], model_max_length=model_max_length)
    tok.save_pretrained(str(path))
    return CLIPTokenizer.from_pretrained(str(path))
