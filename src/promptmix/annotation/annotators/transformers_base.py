"""What the annotators built on a transformers model share: resolving, loading, unloading, provenance.

A subclass names its model and processor classes (``AutoModelForDepthEstimation`` +
``AutoImageProcessor``, ...) and what they are for error messages; it may override
:meth:`TransformersAnnotator._after_load` to check or prepare the loaded model.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ...errors import ModelLoadError
from ...utils.model_source import ModelSource, resolve_model
from .base import Annotator


class TransformersAnnotator(Annotator):
    """An annotator around a transformers model and its processor, both loaded with ``from_pretrained``."""

    model_class: ClassVar[str] = "AutoModel"
    processor_class: ClassVar[str] = "AutoImageProcessor"
    what: ClassVar[str] = "a transformers model and its processor"

    def __init__(self, name: str, *, source: ModelSource, **kwargs: Any):
        super().__init__(name, **kwargs)
        self.source = source
        self.model = None
        self.processor = None

    @classmethod
    def from_spec(cls, arg: str, *, name: str, revision: str | None = None, resolved: ModelSource | None = None,
                  **kwargs: Any) -> "TransformersAnnotator":
        return cls(name, source=resolved or resolve_model(arg, revision, what="annotator"), **kwargs)

    def load(self) -> None:
        if self.model is not None:
            return
        import transformers

        self.validate()
        try:
            self.processor = getattr(transformers, self.processor_class).from_pretrained(self.source.path)
            model = getattr(transformers, self.model_class).from_pretrained(self.source.path, dtype=self.dtype)
        except Exception as exc:
            from ...models.checkpoints import weights_only_refusal

            refusal = weights_only_refusal(exc, self.source.path, f"{self.task} annotator {self.source.name!r}")
            if refusal is not None:
                raise refusal from None
            if not isinstance(exc, (OSError, ValueError, KeyError)):
                raise
            raise ModelLoadError(f"{self.task} annotator {self.source.name!r}: could not load {self.what} "
                                 f"({exc})") from exc
        self._after_load(model)
        self.model = model.to(self.device).eval()
        self._prepare()

    def _after_load(self, model: Any) -> None:
        """Check the loaded model before it is used (raise :class:`ModelLoadError`)."""

    def _prepare(self) -> None:
        """Work done once after loading (e.g. encoding the class names)."""

    def unload(self) -> None:
        self.model = None
        self.processor = None
        super().unload()

    def record(self) -> dict:
        rec = super().record()
        rec["model"] = self.source.record()
        return rec
