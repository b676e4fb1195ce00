"""Mixing Visual Concepts (MVC): new prompt embeddings mixed from the caption embeddings of one class.

Algorithm 1 of Al Rahat & Venkateswara, *Dataset Augmentation by Mixing Visual Concepts*
(`the MVC paper (`docs/papers.md`)`; the supplement is ``...-supplement.md``)::

    1: E = {e_k}, e_k = CLIP(c_k) in R^{m x d}        (encode_texts)
    4: e~ <- RandSample(E)                             (base caption)
    5-9:   P times: e_p <- RandSample(E \\ {e~}); r, s <- Uniform{1..m}, r < s; [e~]_{r:s,:} <- [e_p]_{r:s,:}
    10-15: Q times: e_q <- RandSample(E \\ {e~}); u, v <- Uniform{1..d}, u < v; w <- Uniform{1..m};
           [e~]_{w,u:v} <- [e_q]_{w,u:v}
    16: concatenate CLIP("") for classifier-free guidance  (the diffusers pipeline does this itself
        when it is given ``prompt_embeds`` and a guidance scale > 1: its negative prompt is "")

Positions are kept exactly as Algorithm 1 writes them: 1-based, both ends included, so a coarse op
``{r: 3, s: 5}`` replaces rows 3, 4 and 5 (Python ``[2:5]``) and a fine op ``{row: 7, u: 10, v: 12}``
replaces elements 10..12 of row 7 (Python ``[6, 9:12]``). Caption indices (``base``, ``src``) are
0-based positions in the ``embeddings`` tensor given to :func:`mix_embedding`.

The core is plain torch (no pipeline): :func:`encode_texts` takes any tokenizer + text encoder pair
(``pipe.tokenizer``, ``pipe.text_encoder``), :func:`mix_embedding` returns the new ``[m, d]``
embedding and a JSON-able record that :func:`replay_mixing` turns back into the same tensor, bit for
bit. The generation engine passes the result as ``prompt_embeds`` and stores the record in
``GENERATED.mixing``.
"""

from __future__ import annotations

import dataclasses
import json
import random
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .. import schema
from ..config import StageConfig, field
from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover - torch is imported where tensors are made (keeps configs light)
    import torch

ALGORITHM = "mvc-algorithm-1"
#: Supplement, "Effect number of tokens Mixing": "For fine-grained changes, a small part (less than 10)
#: among the 768 is replaced." -> at most 9 elements per fine op by default.
FINE_MAX_SPAN = 9


# -- encoding -----------------------------------------------------------------------------------------
def encode_texts(tokenizer, text_encoder, texts: Sequence[str], device: torch.device | str | None = None, *,
                 batch_size: int = 64) -> torch.Tensor:
    """Embed ``texts`` as Stable Diffusion's ``encode_prompt`` does: ``[N, L, D]`` last hidden states.

    Each text is padded (and truncated) to ``tokenizer.model_max_length`` (77 for CLIP), so every
    embedding has the same ``L`` rows (Algorithm 1 line 1: ``e_k in R^{m x d}``). The attention mask is
    passed only when the encoder's config asks for it (``use_attention_mask``), as diffusers does.
    """
    texts = list(texts)
    if not texts:
        raise InputError("encode_texts: expected at least one text; got an empty list")
    if device is None:
        device = next(text_encoder.parameters()).device
    import torch

    device = torch.device(device)
    use_mask = bool(getattr(getattr(text_encoder, "config", None), "use_attention_mask", False))
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = texts[start:start + batch_size]
            enc = tokenizer(batch, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                            return_tensors="pt")
            mask = enc.attention_mask.to(device) if use_mask else None
            hidden = text_encoder(enc.input_ids.to(device), attention_mask=mask)[0]
            out.append(hidden)
    return torch.cat(out, dim=0)


# -- sampling -----------------------------------------------------------------------------------------
def _uniform_pair(rng: random.Random, n: int, max_span: int | None) -> tuple[int, int]:
    """``a, b <- Uniform{1..n}`` with ``a < b`` (uniform over all such pairs), optionally ``b - a + 1 <= max_span``.

    Pairs are drawn by width ``b - a`` then start, weighted by how many pairs have that width, so every
    allowed pair has the same probability.
    """
    widest = n - 1 if max_span is None else min(n - 1, max_span - 1)
    total = sum(n - k for k in range(1, widest + 1))
    idx = rng.randrange(total)
    for k in range(1, widest + 1):
        if idx < n - k:
            a = idx + 1
            return a, a + k
        idx -= n - k
    raise AssertionError("unreachable")  # pragma: no cover


def _others(rng: random.Random, n: int, base: int) -> int:
    """``RandSample(E \\ {e~})``: a caption index other than the base, uniformly (lines 6 and 11)."""
    j = rng.randrange(n - 1)
    return j + 1 if j >= base else j


def _check(embeddings: torch.Tensor, coarse: int, fine: int, fine_max_span: int | None) -> tuple[int, int, int]:
    if embeddings.ndim != 3:
        raise InputError(f"MVC embeddings: expected a [N, L, D] tensor; got shape {tuple(embeddings.shape)}")
    n, m, d = embeddings.shape
    if coarse < 0 or fine < 0:
        raise InputError(f"MVC: coarse (P) and fine (Q) must be >= 0; got coarse={coarse}, fine={fine}")
    if fine_max_span is not None and fine_max_span < 2:
        raise InputError(f"MVC: fine_max_span must be >= 2 (u < v covers at least two elements); got {fine_max_span}")
    if n < 1:
        raise InputError("MVC: expected at least one caption embedding; got none")
    if (coarse or fine) and n < 2:
        raise InputError("MVC: mixing needs at least 2 caption embeddings of the class (Algorithm 1 samples another "
                         f"caption than the base); got {n}. Caption more images of the class or set coarse=fine=0")
    if (coarse and m < 2) or (fine and d < 2):
        raise InputError(f"MVC: embeddings of shape {tuple(embeddings.shape)} are too small to mix")
    return n, m, d


def mix_embedding(embeddings: torch.Tensor, *, seed: int, coarse: int, fine: int, base: int | None = None,
                  fine_max_span: int | None = None, ids: Sequence[str] | None = None) -> tuple[torch.Tensor, dict]:
    """One new embedding by Algorithm 1 (lines 4-15) from the ``[N, m, d]`` caption embeddings of a class.

    - line 4: the base ``e~`` is ``embeddings[base]``, drawn uniformly when ``base`` is None;
    - lines 5-9 (``coarse`` = P times): another caption ``src != base`` drawn uniformly; ``r < s`` drawn
      uniformly among pairs of ``{1..m}``; rows ``r..s`` of ``e~`` are replaced by rows ``r..s`` of ``src``;
    - lines 10-15 (``fine`` = Q times): another caption ``src != base``; ``u < v`` uniformly among pairs
      of ``{1..d}``; a row ``w`` uniformly from ``{1..m}``; elements ``u..v`` of row ``w`` replaced by those
      of ``src``. ``fine_max_span`` (None = Algorithm 1 as written) keeps ``v - u + 1 <= fine_max_span``,
      as the supplement recommends ("less than 10 among the 768"); pairs stay uniform among those allowed.

    Rows/elements always come from the *original* embedding of ``src`` (``e_p``, ``e_q`` are members of
    ``E``), and ops are applied in order, so a later op may overwrite an earlier one, as in the paper.
    Randomness is ``random.Random(seed)`` only: the same inputs and seed give the same record.
    Returns ``(embedding [m, d] in the input's dtype and device, record)``; the record is JSON-able and
    :func:`replay_mixing` reproduces the embedding from it. ``ids`` (one per caption, e.g. prompt ids)
    are copied into the record as ``base_id``/``src_id``.
    """
    n, m, d = _check(embeddings, coarse, fine, fine_max_span)
    if ids is not None and len(ids) != n:
        raise InputError(f"MVC: ids has {len(ids)} entries for {n} embeddings")
    rng = random.Random(int(seed))
    if base is None:
        base = rng.randrange(n)
    elif not 0 <= int(base) < n:
        raise InputError(f"MVC: base index must be in 0..{n - 1}; got {base}")
    base = int(base)
    coarse_ops, fine_ops = [], []
    for _ in range(coarse):
        src = _others(rng, n, base)
        r, s = _uniform_pair(rng, m, None)
        coarse_ops.append({"src": src, "r": r, "s": s})
    for _ in range(fine):
        src = _others(rng, n, base)
        u, v = _uniform_pair(rng, d, fine_max_span)
        w = rng.randint(1, m)
        fine_ops.append({"src": src, "row": w, "u": u, "v": v})
    record: dict[str, Any] = {
        "algorithm": ALGORITHM,
        "seed": int(seed),
        "num_embeddings": n,
        "shape": [m, d],
        "base": base,
        "coarse": coarse_ops,
        "fine": fine_ops,
        "fine_max_span": fine_max_span,
        "indexing": "positions 1-based inclusive (Algorithm 1); base/src 0-based indices into the embeddings",
    }
    if ids is not None:
        record["base_id"] = str(ids[base])
        for op in coarse_ops + fine_ops:
            op["src_id"] = str(ids[op["src"]])
    return replay_mixing(embeddings, record), record


def replay_mixing(embeddings: torch.Tensor, record: Mapping[str, Any] | str) -> torch.Tensor:
    """Apply a mixing record (a dict or its JSON text) to ``embeddings``; bit-identical to :func:`mix_embedding`."""
    if isinstance(record, str):
        record = json.loads(record)
    if record.get("algorithm") != ALGORITHM:
        raise InputError(f"MVC record: expected algorithm {ALGORITHM!r}; got {record.get('algorithm')!r}")
    if embeddings.ndim != 3:
        raise InputError(f"MVC embeddings: expected a [N, L, D] tensor; got shape {tuple(embeddings.shape)}")
    n, m, d = embeddings.shape
    if int(record["num_embeddings"]) != n or list(record["shape"]) != [m, d]:
        raise InputError(f"MVC record was made from {record['num_embeddings']} embeddings of shape {record['shape']}; "
                         f"got {n} of shape {[m, d]}")
    out = embeddings[int(record["base"])].clone()
    for op in record["coarse"]:
        r, s = int(op["r"]), int(op["s"])
        if not 1 <= r < s <= m:
            raise InputError(f"MVC record: coarse op needs 1 <= r < s <= {m}; got {op}")
        out[r - 1:s] = embeddings[int(op["src"]), r - 1:s]
    for op in record["fine"]:
        w, u, v = int(op["row"]), int(op["u"]), int(op["v"])
        if not (1 <= w <= m and 1 <= u < v <= d):
            raise InputError(f"MVC record: fine op needs 1 <= row <= {m} and 1 <= u < v <= {d}; got {op}")
        out[w - 1, u - 1:v] = embeddings[int(op["src"]), w - 1, u - 1:v]
    return out


# -- captions of a class ------------------------------------------------------------------------------
def captions_by_class(prompts) -> dict[int, list[tuple[str, str]]]:
    """``{label: [(prompt_id, caption), ...]}`` from a prompt bag's ``prompts`` dataset.

    Uses the rows of origin ``caption`` with a label and their ``base_text`` (the caption before
    prefix/suffix; class-template and manual rows are not captions and are left out). A caption that
    appears in several prompts (e.g. with a grayscale and a colour suffix) is listed once, under its
    first prompt id. Order is the bag's order.
    """
    out: dict[int, list[tuple[str, str]]] = {}
    seen: set[tuple[int, str]] = set()
    cols = prompts.select_columns([schema.PROMPT_ID, schema.BASE_TEXT, schema.ORIGIN, schema.LABEL])
    for row in cols:
        label = row[schema.LABEL]
        if label is None or row[schema.ORIGIN] != "caption":
            continue
        key = (int(label), row[schema.BASE_TEXT])
        if key in seen:
            continue
        seen.add(key)
        out.setdefault(int(label), []).append((row[schema.PROMPT_ID], row[schema.BASE_TEXT]))
    return out


@dataclasses.dataclass
class MVCConfig(StageConfig):
    """MVC as a prompt-embedding source of ``promptmix generate`` (classification runs).

    For each class, its captions (``caption_prefix`` + caption, as the paper's main text and supplement
    describe) are embedded with the pipeline's text encoder, and ``images_per_class`` new embeddings are
    mixed from them (Algorithm 1), each with its own seed and record.
    The paper gives no values for P and Q; the defaults make one coarse and one fine edit per image
    (Fig. 2 shows each kind alone), and fine edits stay below 10 elements as the supplement advises.
    """

    enabled: bool = field(False, help="use MVC-mixed caption embeddings instead of prompt texts")
    coarse: int = field(1, help="P: coarse mixes per embedding (replace token rows r..s from another caption)")
    fine: int = field(1, help="Q: fine mixes per embedding (replace elements u..v of one row from another caption)")
    fine_max_span: int | None = field(
        FINE_MAX_SPAN, help="most elements one fine mix replaces (supplement: 'less than 10'); null = Algorithm 1 "
                            "as written (any u < v)")
    images_per_class: int = field(10, help="N_y: new embeddings (= generated images) per class")
    caption_prefix: str = field("This is an image of {label}",
                                help="sentence put before each caption so the class is named ({label} = class name)")
    prefix_separator: str = field(". ", help="text between the prefix sentence and the caption")

    def validate(self) -> None:
        if self.coarse < 0:
            self.fail("coarse", "an integer >= 0")
        if self.fine < 0:
            self.fail("fine", "an integer >= 0")
        if self.fine_max_span is not None and self.fine_max_span < 2:
            self.fail("fine_max_span", "null or an integer >= 2")
        if self.images_per_class < 1:
            self.fail("images_per_class", "an integer >= 1")
        try:
            self.caption_prefix.format(label="x")
        except (KeyError, IndexError, ValueError):
            self.fail("caption_prefix", "text with no placeholder other than {label}")

    def class_texts(self, captions: Sequence[str], label_name: str) -> list[str]:
        """The texts to embed for one class: ``"This is an image of cat. <caption>"``."""
        prefix = self.caption_prefix.format(label=label_name).strip()
        if not prefix:
            return [c for c in captions]
        return [f"{prefix}{self.prefix_separator}{c}" if c else prefix for c in captions]

    def mix(self, embeddings: torch.Tensor, *, seed: int, base: int | None = None,
            ids: Sequence[str] | None = None) -> tuple[torch.Tensor, dict]:
        """:func:`mix_embedding` with this config's P, Q and fine span."""
        return mix_embedding(embeddings, seed=seed, coarse=self.coarse, fine=self.fine, base=base,
                             fine_max_span=self.fine_max_span, ids=ids)
