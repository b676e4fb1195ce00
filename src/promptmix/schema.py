"""Every dataset promptmix writes, declared once with ``datasets.Features``.

Column names live here and nowhere else: stages import the constants below.

Real datasets (``promptmix real ...``, Hub layout, splits train/validation/test)
    COUNTING_REAL, COUNTING_REAL_BOXES (PANDA-Crowd: a box per person), DEPTH_REAL, classification_real(names)
Run folder (``RUN/``)
    CAPTIONS        RUN/captions/captions.parquet
    PROMPTS         RUN/prompts/prompts.parquet      (a "prompt bag")
    SOURCES         RUN/prompts/sources.parquet      (size, JPEG quality, grayscale of each source image)
    GENERATED       RUN/images/chunk-*.parquet
    counting_annotation / DEPTH_ANNOTATION / CLASSIFICATION_ANNOTATION
                    RUN/annotations/<annotator>/chunk-*.parquet
MVC fine-tuning (``training/finetune_mvc.py``)
    MVC_PAIRS       OUTPUT/pairs.parquet             (same-class index pairs)
Fake dataset (``promptmix filter``, Hub layout)
    fake_features(task, class_names)

Maps (density, depth) are one struct per map, ``{"shape": [H, W], "dtype": ..., "data": bytes}``
(:func:`map_feature`: H*W little-endian values, row-major; float16 in annotations and fake datasets, float32
in real depth datasets). NumPy reads ``data`` in place (``np.frombuffer``), with no Python object per value;
:mod:`promptmix.maps` reads and writes them (``maps.decode(row["density"])`` -> an (H, W) array) and says why
this layout (not ``Array2D``: the sizes differ from row to row; not nested or flat lists: Parquet's per-value
levels cost 5-6x the bytes layout's).

Each map is stored once. In the fake dataset every annotator's map is in ``annotations``; the training
target is the map of the annotator named in ``target_annotator`` (:func:`fake_target_map`), and the
target column (``density`` / ``depth``) holds a map only when the target is the ``mean`` of the
annotators' maps (computed once by ``promptmix filter``), null otherwise.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

TASKS = ("counting", "depth", "classification")
MEAN_TARGET = "mean"  # target_annotator of fake rows whose target is the mean of the annotators' maps

# -- column names ------------------------------------------------------------------------------------
IMAGE = "image"
IMAGE_ID = "image_id"
POINTS = "points"
BOXES = "boxes"
COUNT = "count"
WIDTH = "width"
HEIGHT = "height"
JPEG_QUALITY = "jpeg_quality"
IS_GRAYSCALE = "is_grayscale"
DEPTH = "depth"
SCENE = "scene"
LABEL = "label"
DENSITY = "density"

CAPTION = "caption"
CAPTIONER = "captioner"

PROMPT_ID = "prompt_id"
PROMPT = "prompt"
BASE_TEXT = "base_text"
ORIGIN = "origin"  # caption | manual | template | class
SOURCE_IMAGE_IDS = "source_image_ids"

ROW_ID = "row_id"
IMAGE_INDEX = "image_index"
SOURCE_IMAGE_ID = "source_image_id"
SEED = "seed"
MIXING = "mixing"  # JSON text of the MVC mixing record, null when not used
CONDITIONING_IMAGE_ID = "conditioning_image_id"
CHUNK = "chunk"

ANNOTATOR = "annotator"
OK = "ok"
PROBABILITY = "probability"
ANNOTATIONS = "annotations"
QUALITY_SCORE = "quality_score"
KEPT = "kept"
ANNOTATION_OK = "annotation_ok"
TARGET_ANNOTATOR = "target_annotator"

CONDITIONING_INDEX = "conditioning_index"  # MVC fine-tuning pairs: row index in the real train split
TARGET_INDEX = "target_index"

PROMPT_ORIGINS = ("caption", "manual", "template", "class")

def map_feature(dtype: str = "float16") -> dict:
    """A dense 2-D map: ``{"shape": [H, W] int32, "dtype": "float16"|"float32", "data": H*W values as
    little-endian bytes, row-major}`` (``dtype`` names what the rows hold; see :mod:`promptmix.maps`)."""
    from datasets import List, Value

    from .maps import DATA, DTYPE, SHAPE

    del dtype  # the values' dtype is stored per row (float16 for annotations, float32 for real depth)
    return {SHAPE: List(Value("int32"), length=2), DTYPE: Value("string"), DATA: Value("binary")}


def fake_target_map(row: dict, task_map: str) -> Any:
    """The training target map value of a fake row (a ``python``/``numpy``-formatted row): the map of the
    annotator named in ``target_annotator`` from ``annotations``, or the row's own ``task_map`` column when
    the target is the mean of the annotators' maps (stored once there). ``None`` when there is none."""
    name = row.get(TARGET_ANNOTATOR)
    if name is None or name == MEAN_TARGET:
        return row.get(task_map)
    for ann in row.get(ANNOTATIONS) if row.get(ANNOTATIONS) is not None else []:
        if ann.get(ANNOTATOR) == name:
            return ann.get(task_map)
    return row.get(task_map)


@functools.lru_cache(maxsize=None)
def _features() -> dict[str, Any]:
    """The ``datasets.Features`` of every fixed-schema dataset, built on first use (importing ``datasets``
    only then keeps ``import promptmix.schema`` light)."""
    from datasets import Features, Image, List, Value

    _IMAGE_META = {
        WIDTH: Value("int32"),
        HEIGHT: Value("int32"),
        JPEG_QUALITY: Value("int32"),  # null when the source is not a JPEG
        IS_GRAYSCALE: Value("bool"),
    }

    MAP16 = map_feature("float16")

    MAP32 = map_feature("float32")

    # -- real datasets -----------------------------------------------------------------------------------
    COUNTING_REAL = Features({
        IMAGE: Image(),
        IMAGE_ID: Value("string"),
        POINTS: List(List(Value("float32"), length=2)),  # (x, y) head points, as annotated (some just off-frame)
        COUNT: Value("int32"),  # number of annotated points, all of them
        **_IMAGE_META,
    })

    # crowd counting with a box per person (PANDA-Crowd): points are the box centres, boxes are (x0, y0, x1, y1)
    # in pixels of the stored image, in the same order; the training target puts a Gaussian matched to each box
    COUNTING_REAL_BOXES = Features({**COUNTING_REAL, BOXES: List(List(Value("float32"), length=4))})

    DEPTH_REAL = Features({
        IMAGE: Image(),
        IMAGE_ID: Value("string"),
        DEPTH: MAP32,  # metres, H x W
        SCENE: Value("string"),
        **_IMAGE_META,
    })

    # -- run folder ----------------------------------------------------------------------------------------
    CAPTIONS = Features({
        IMAGE_ID: Value("string"),
        CAPTION: Value("string"),
        LABEL: Value("int32"),  # null when the real set has no labels
        CAPTIONER: Value("string"),
    })

    PROMPTS = Features({
        PROMPT_ID: Value("string"),  # stable hash of PROMPT
        PROMPT: Value("string"),  # final text after modifiers
        BASE_TEXT: Value("string"),  # caption / manual text before modifiers
        ORIGIN: Value("string"),  # one of PROMPT_ORIGINS
        SOURCE_IMAGE_IDS: List(Value("string")),  # source images (size, JPEG quality); empty for manual prompts
        LABEL: Value("int32"),  # class index, null when not classification
    })

    SOURCES = Features({
        IMAGE_ID: Value("string"),
        LABEL: Value("int32"),
        **_IMAGE_META,
    })

    GENERATED = Features({
        ROW_ID: Value("string"),  # f"{prompt_id}-{image_index:05d}", unique in a run
        IMAGE: Image(),  # JPEG bytes at the source's quality
        PROMPT: Value("string"),
        PROMPT_ID: Value("string"),
        IMAGE_INDEX: Value("int32"),  # 0..k-1 within the prompt
        SOURCE_IMAGE_ID: Value("string"),  # null for prompts without a source
        LABEL: Value("int32"),
        SEED: Value("int64"),  # derived from (run seed, prompt_id, image_index)
        WIDTH: Value("int32"),
        HEIGHT: Value("int32"),
        JPEG_QUALITY: Value("int32"),
        MIXING: Value("string"),  # JSON mixing record (MVC), null otherwise
        CONDITIONING_IMAGE_ID: Value("string"),  # image-conditioned (MVC fine-tuned) generation, else null
    })

    # Same-class (conditioning, target) index pairs for MVC fine-tuning, OUTPUT/pairs.parquet: indices into
    # the real train split, not copies of the images (MVC supplement, "Dataset Preparation").
    MVC_PAIRS = Features({
        CONDITIONING_INDEX: Value("int64"),
        TARGET_INDEX: Value("int64"),
        LABEL: Value("int32"),
    })

    COUNTING_ANNOTATION = Features({
        ROW_ID: Value("string"),
        COUNT: Value("float32"),
        DENSITY: MAP16,  # at the annotator's output resolution
        OK: Value("bool"),  # False when the output had NaN/inf
    })

    DEPTH_ANNOTATION = Features({
        ROW_ID: Value("string"),
        DEPTH: MAP16,
        OK: Value("bool"),
    })

    CLASSIFICATION_ANNOTATION = Features({
        ROW_ID: Value("string"),
        LABEL: Value("int32"),  # predicted class index in the real set's label space
        PROBABILITY: Value("float32"),  # probability of the predicted class
        OK: Value("bool"),
    })

    return {"_IMAGE_META": _IMAGE_META, "MAP16": MAP16, "MAP32": MAP32, "COUNTING_REAL": COUNTING_REAL, "COUNTING_REAL_BOXES": COUNTING_REAL_BOXES,
            "DEPTH_REAL": DEPTH_REAL, "CAPTIONS": CAPTIONS, "PROMPTS": PROMPTS, "SOURCES": SOURCES,
            "GENERATED": GENERATED, "MVC_PAIRS": MVC_PAIRS, "COUNTING_ANNOTATION": COUNTING_ANNOTATION,
            "DEPTH_ANNOTATION": DEPTH_ANNOTATION, "CLASSIFICATION_ANNOTATION": CLASSIFICATION_ANNOTATION}


def classification_real(class_names: Sequence[str]):
    from datasets import ClassLabel, Features, Image, Value

    _IMAGE_META = _features()["_IMAGE_META"]
    return Features({
        IMAGE: Image(),
        IMAGE_ID: Value("string"),
        LABEL: ClassLabel(names=list(class_names)),
        **_IMAGE_META,
    })


def real_features(task: str, class_names: Sequence[str] | None = None):
    if task == "counting":
        return _features()["COUNTING_REAL"]
    if task == "depth":
        return _features()["DEPTH_REAL"]
    if task == "classification":
        return classification_real(class_names or [])
    raise ValueError(f"task: expected one of {TASKS}; got {task!r}")


def annotation_features(task: str):
    f = _features()
    return {"counting": f["COUNTING_ANNOTATION"], "depth": f["DEPTH_ANNOTATION"],
            "classification": f["CLASSIFICATION_ANNOTATION"]}[task]


def _annotation_struct(task: str) -> dict:
    from datasets import Value

    feats = dict(annotation_features(task))
    feats.pop(ROW_ID)
    return {ANNOTATOR: Value("string"), **feats}


# -- fake dataset -------------------------------------------------------------------------------------
def fake_features(task: str, class_names: Sequence[str] | None = None):
    """The fake dataset ``promptmix filter`` writes and ``promptmix publish`` publishes.

    Generation columns, every annotator's output in ``annotations`` (one struct per annotator, in
    annotator order), the quality score, the ``kept`` flag and the training target:
    counting ``count`` and the map of ``target_annotator`` (``density`` holds it only for the ``mean``
    target, see :func:`fake_target_map`), depth likewise with ``depth``, classification ``label`` (the
    prompt's class).
    """
    from datasets import ClassLabel, Features, List, Value

    MAP16 = _features()["MAP16"]
    feats = dict(_features()["GENERATED"])
    if task == "classification":
        feats[LABEL] = ClassLabel(names=list(class_names or []))
    feats[ANNOTATIONS] = List(_annotation_struct(task))
    feats[QUALITY_SCORE] = Value("float32")  # null with one annotator
    feats[KEPT] = Value("bool")
    feats[ANNOTATION_OK] = Value("bool")
    feats[TARGET_ANNOTATOR] = Value("string")  # annotator name, or "mean"
    if task == "counting":
        feats[DENSITY] = MAP16  # null unless target_annotator is "mean": the map is annotations[target].density
        feats[COUNT] = Value("float32")
    elif task == "depth":
        feats[DEPTH] = MAP16  # null unless target_annotator is "mean": the map is annotations[target].depth
    elif task != "classification":
        raise ValueError(f"task: expected one of {TASKS}; got {task!r}")
    return Features(feats)


_LAZY = ("MAP16", "MAP32", "COUNTING_REAL", "COUNTING_REAL_BOXES", "DEPTH_REAL", "CAPTIONS", "PROMPTS", "SOURCES",
         "GENERATED", "MVC_PAIRS", "COUNTING_ANNOTATION", "DEPTH_ANNOTATION", "CLASSIFICATION_ANNOTATION")


def __getattr__(name: str) -> Any:
    """``schema.COUNTING_REAL``, ``schema.GENERATED``... (module attributes built lazily)."""
    if name in _LAZY:
        return _features()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
