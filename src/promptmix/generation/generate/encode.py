"""Turning pipeline output into stored rows, off the generating thread.

The pipeline returns float arrays in [0, 1]; each image is converted to 8 bits (the same
rounding diffusers uses for PIL output), resized to its row's exact size, made grayscale when its
source is, and JPEG-encoded at the row's quality. :class:`BackgroundWorker` runs this and the
Parquet writes on one background thread, in submission order, so they overlap the next
pipeline call (PIL's JPEG encoder and pyarrow release the GIL).
"""

from __future__ import annotations

import io
import logging
import queue
import threading
from typing import Any, Callable

import numpy as np
from PIL import Image

from ...errors import PromptmixError
from .sizes import resize_exact

logger = logging.getLogger(__name__)


class EncodeError(PromptmixError):
    """A generated image could not be encoded; the message names the row, its prompt_id and seed."""


def to_pil(array: np.ndarray) -> Image.Image:
    """A float HxWx3 array in [0, 1] to an 8-bit RGB image (rounded as diffusers' ``numpy_to_pil``)."""
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("the image contains NaN or infinite values")
    return Image.fromarray((np.clip(array, 0.0, 1.0) * 255).round().astype("uint8"))


def finish_image(image: Image.Image, width: int, height: int, *, grayscale: bool = False) -> Image.Image:
    """Resize to the stored size and convert to grayscale ("L") when the source is grayscale."""
    image = resize_exact(image, width, height)
    return image.convert("L") if grayscale else image


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """JPEG bytes at ``quality`` (1-100), baseline, default chroma subsampling: deterministic for a PIL version."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """Decoded pixels (uint8, HxW or HxWxC) of stored image bytes."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def encode_row_image(array: np.ndarray, *, width: int, height: int, quality: int, grayscale: bool,
                     row_id: str, prompt_id: str, seed: int) -> bytes:
    """Array -> finished JPEG bytes for one row; any failure becomes an :class:`EncodeError` naming the row."""
    try:
        return encode_jpeg(finish_image(to_pil(array), width, height, grayscale=grayscale), quality)
    except Exception as exc:
        raise EncodeError(f"could not encode the image of row {row_id} (prompt_id {prompt_id}, seed {seed}): "
                          f"{type(exc).__name__}: {exc}") from exc


class BackgroundWorker:
    """One daemon thread running submitted jobs in order; the first error is re-raised in the caller.

    ``max_pending`` bounds how many jobs may wait (so generated images do not pile up in memory
    when writing is slower than generating). Use as a context manager or call :meth:`close`.
    """

    def __init__(self, max_pending: int = 4, name: str = "promptmix-writer"):
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.busy_seconds = 0.0

    def _run(self) -> None:
        import time

        while True:
            job = self._queue.get()
            if job is None:
                return
            if self._error is None:
                fn, args, kwargs = job
                t0 = time.perf_counter()
                try:
                    fn(*args, **kwargs)
                except BaseException as exc:  # handed to the caller
                    self._error = exc
                self.busy_seconds += time.perf_counter() - t0

    def _raise_pending_error(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._raise_pending_error()
        self._queue.put((fn, args, kwargs))

    def close(self) -> None:
        """Wait for every submitted job, stop the thread, and raise the first job error if any."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise_pending_error()

    def __enter__(self) -> "BackgroundWorker":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # stop quietly; the original exception wins
            if self._thread.is_alive():
                self._queue.put(None)
                self._thread.join()
