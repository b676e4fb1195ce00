"""A tiny random-weight BLIP captioner saved in the real ``save_pretrained`` layout.

``BlipForConditionalGeneration`` (1-layer vision and text towers, hidden size 32, 32x32 images) with
a ``BlipProcessor`` whose ``BertTokenizer`` is built here from a word list (no download). The folder
loads offline exactly like ``Salesforce/blip-image-captioning-base``::

    AutoProcessor.from_pretrained(path); AutoModelForImageTextToText.from_pretrained(path)

Its captions are random strings of the words below; different images give different captions.
Captioning 10 images takes a few tens of milliseconds on one CPU core.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]")
IMAGE_SIZE = 32

# Words of crowd, indoor and animal scenes: enough for the decoded captions to look like text.
_WORDS = """
a an the of in on at with and near by from under over behind front top side
people person man woman men women child children boy girl crowd group team family
street road square park city building buildings house room kitchen bathroom bedroom office
station train bus car cars bike stadium concert market beach field grass tree trees sky
water river lake snow mountain wall floor table chair sofa bed window door light lights
cat cats dog dogs bird birds horse cow sheep animal animals
standing sitting walking running crowded large small big many several some two three
white black red blue green yellow gray brown dark bright old new tall long
photo picture image view close up inside outside night day
watching holding wearing looking playing waiting gathered
""".split()


def tiny_vocab() -> list[str]:
    """Special tokens, the word list, and single letters/digits (so any lowercase text tokenizes)."""
    extra = [c for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"]
    words = list(dict.fromkeys(_WORDS))
    pieces = [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    return list(dict.fromkeys([*SPECIAL, *words, *extra, *pieces]))


def save_tiny_captioner(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny random BLIP captioning model + processor to ``path`` (created if needed)."""
    import torch
    from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessorPil,
                              BlipProcessor)

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokens = tiny_vocab()
    vocab = {tok: i for i, tok in enumerate(tokens)}
    (path / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, bos_token="[DEC]", model_max_length=64)
    image_processor = BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)

    config = BlipConfig(
        text_config=dict(
            vocab_size=len(tokens), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=2, encoder_hidden_size=32, max_position_embeddings=64,
            bos_token_id=vocab["[DEC]"], pad_token_id=vocab["[PAD]"], sep_token_id=vocab["[SEP]"],
            eos_token_id=vocab["[SEP]"],
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            image_size=IMAGE_SIZE, patch_size=8,
        ),
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    with torch.no_grad():
        # Default init (std 0.02) makes every image embed alike and every caption the same; larger patch
        # and cross-attention weights make the caption depend on the image.
        torch.nn.init.normal_(model.vision_model.embeddings.patch_embedding.weight, std=0.5)
        for name, param in model.text_decoder.named_parameters():
            if "crossattention" in name and name.endswith("weight") and param.ndim == 2:
                torch.nn.init.normal_(param, std=0.3)
        # Only whole words are generated (special tokens, letters and word pieces are kept for tokenizing).
        words = set(_WORDS)
        bias = model.text_decoder.cls.predictions.decoder.bias
        for tok, i in vocab.items():
            if tok not in words:
                bias[i] = -1e4
    model.save_pretrained(str(path))
    processor.save_pretrained(str(path))
    return path
