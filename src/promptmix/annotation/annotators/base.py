"""The one small interface every annotator implements.

An :class:`Annotator` has a ``name`` (unique in a run; its output folder is
``RUN/annotations/<name>/``), a ``task``, and ``load()`` / ``annotate(images)`` / ``unload()``.
``annotate`` takes PIL images and returns one dict per image holding the columns of
``promptmix.schema.annotation_features(task)`` except ``row_id``:

- counting: ``count`` (float), ``density`` (2-D float16 array at the annotator's output resolution), ``ok``
- depth: ``depth`` (2-D float16 array), ``ok``
- classification: ``label`` (index in the real set's label space), ``probability``, ``ok``

``ok`` is False when the output holds NaN or inf. Work runs in batches of ``batch_size`` on the
device from ``promptmix.utils.device`` (float16 on CUDA, float32 on CPU by default).

``promptmix annotate`` decodes each image once for all annotators and calls
``annotate_arrays(arrays)`` with (H, W, 3) uint8 RGB numpy arrays. The default wraps them as PIL
images and calls ``annotate``, so an annotator that only implements ``annotate`` works unchanged;
the counting annotators override it to send the uint8 batch to the device and normalise there
(their results are bit-identical to ``annotate`` on the same images).
"""

from __future__ import annotations

import abc
import gc
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Sequence

import torch

from ...utils.device import pick_device, pick_dtype

if TYPE_CHECKING:
    import numpy as np


def image_size(image: Any) -> tuple[int, int]:
    """(width, height) of a PIL image or of an (H, W, C) array."""
    if hasattr(image, "shape"):
        return int(image.shape[1]), int(image.shape[0])
    return tuple(image.size)


def as_rgb_array(image: Any) -> "np.ndarray":
    """A PIL image (any mode) as an (H, W, 3) uint8 RGB array, as ``im.convert("RGB")`` gives."""
    import numpy as np

    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def group_by_size(images: Sequence[Any], batch_size: int) -> Iterator[list[int]]:
    """Indices of ``images`` grouped by (width, height), in batches of at most ``batch_size``.

    Dense annotators (counting, depth) batch only images of the same size, so nothing is resized
    or padded; a run generated at the real set's sizes has few distinct sizes.
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(image_size(im), []).append(i)
    for idx in groups.values():
        for start in range(0, len(idx), max(1, batch_size)):
            yield idx[start:start + batch_size]


class Annotator(abc.ABC):
    """Base class: name, task, device/dtype/batch size, ``load``/``annotate``/``unload``/``record``."""

    task: ClassVar[str] = ""
    #: whether ``promptmix annotate`` should hand it batches of one image size (dense annotators that do not
    #: resize); otherwise it gets consecutive images of any sizes, ``batch_size`` at a time
    batch_by_size: ClassVar[bool] = False

    def __init__(self, name: str, *, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                 batch_size: int = 8, spec: str | None = None, class_names: Sequence[str] | None = None):
        self.name = name
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.dtype = dtype if isinstance(dtype, torch.dtype) else pick_dtype(dtype, self.device)
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1; got {batch_size}")
        self.batch_size = int(batch_size)
        self.spec = spec
        self.class_names = list(class_names) if class_names is not None else None

    @property
    def output_stride(self) -> int | None:
        """Input pixels per output pixel of dense annotators; None when it depends on the model's processor."""
        return None

    def validate(self) -> None:
        """Cheap checks before any work (no weights loaded); raise :class:`~promptmix.errors.InputError`."""

    @abc.abstractmethod
    def load(self) -> None:
        """Load weights (idempotent)."""

    @abc.abstractmethod
    def annotate(self, images: list) -> list[dict]:
        """One output dict per image, in order (see the module docstring)."""

    def annotate_arrays(self, arrays: list) -> list[dict]:
        """``annotate`` for images given as (H, W, 3) uint8 RGB arrays (decoded once for all annotators).

        The default wraps each array as a PIL image (no copy of the decode) and calls ``annotate``.
        """
        from PIL import Image

        return self.annotate([Image.fromarray(a, "RGB") for a in arrays])

    def unload(self) -> None:
        """Free the weights (on an accelerator, collect now so that the next model has the memory)."""
        if self.device.type != "cpu":
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def record(self) -> dict:
        """Provenance written to ``annotator.json`` and the manifest (no tokens, no absolute cache paths)."""
        return {"name": self.name, "task": self.task, "spec": self.spec, "kind": type(self).__name__,
                "output_stride": self.output_stride, "dtype": str(self.dtype).replace("torch.", "")}

    def __enter__(self) -> "Annotator":
        self.load()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.unload()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, task={self.task!r}, device={self.device}, "
                f"dtype={self.dtype})")
