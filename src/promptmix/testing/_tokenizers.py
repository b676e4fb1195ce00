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


# -- T5 (SentencePiece unigram) and Gemma (byte-fallback BPE) ------------------------------------------
# A handful of whole words (with SentencePiece's "▁" word-start mark), every letter, digit and ASCII
# punctuation mark: any English text tokenizes, unknown characters become <unk> (T5) or bytes (Gemma).
_WORDS = ("a", "the", "of", "and", "in", "on", "with", "photo", "image", "cat", "dog", "bird", "crowd",
          "people", "street", "large", "this", "is", "an", "word", "thing", "number", "drawn", "by", "hand")
_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


def save_tiny_t5_tokenizer(path: str | Path, model_max_length: int = 512):
    """Write a tiny ``T5Tokenizer`` (a ``tokenizers`` Unigram model with T5's Metaspace rules) and load it back.

    Ids follow T5: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2; every sequence ends with ``</s>``. No sentinel
    (``<extra_id_N>``) tokens: text encoders never see them.
    """
    from transformers import AutoTokenizer, T5Tokenizer

    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    seen = {p for p, _ in pieces}
    for i, word in enumerate(_WORDS):  # whole words score higher than their spelling
        pieces.append(("▁" + word, -3.0 - 0.01 * i))
        seen.add("▁" + word)
    for c in _CHARS:
        for piece, score in ((c, -6.0), ("▁" + c, -7.0)):
            if piece not in seen:
                pieces.append((piece, score))
                seen.add(piece)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length).save_pretrained(str(path))
    return AutoTokenizer.from_pretrained(str(path))


def save_tiny_gemma_tokenizer(path: str | Path, model_max_length: int = 8192):
    """Write a tiny ``GemmaTokenizer`` (a ``tokenizers`` BPE with byte fallback, Gemma's specials) and load it back.

    Ids follow Gemma: ``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2, ``<unk>`` 3, ``<mask>`` 4, then the 256
    byte tokens ``<0x00>``..``<0xFF>``; every sequence starts with ``<bos>``; spaces are "▁".
    """
    from transformers import AutoTokenizer, GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for c in "▁" + _CHARS:
        vocab.setdefault(c, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in _WORDS:  # "▁" + "c" -> "▁c", "▁c" + "a" -> "▁ca", ... one merge chain per word
        current = "▁"
        for ch in word:
            if current + ch not in vocab:
                merges.append((current, ch))
                vocab[current + ch] = len(vocab)
            current += ch
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False,
                   model_max_length=model_max_length).save_pretrained(str(path))
    return AutoTokenizer.from_pretrained(str(path))
