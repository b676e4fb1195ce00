"""promptmix: grow small image datasets with text-to-image diffusion models.

Stages (one subpackage each): ``builders`` (real datasets), ``generation``
(captions, prompt bags, images), ``annotation`` (annotators, quality scores,
filtering), ``dataset_cards`` and ``publishing`` (Hub repos), ``training``
(lightweight networks on real + fake data), ``pipeline`` (``promptmix run``).
Every dataset written is declared in :mod:`promptmix.schema`.
"""

__version__ = "0.1.0"
