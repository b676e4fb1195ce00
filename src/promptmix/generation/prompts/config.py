"""``PromptsConfig``: the settings of stage ``prompts`` (the prompt bag)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ...config import StageConfig, field


# -- config -------------------------------------------------------------------------------------------
@dataclasses.dataclass
class PromptsConfig(StageConfig):
    """How the prompt bag is built (``promptmix prompts`` or the ``prompts:`` section of a pipeline config)."""

    _section = "prompts"

    use_captions: bool = field(True, help="add each caption as a prompt (origin 'caption')", flags=("--captions",))
    manual: list[str] = field(default_factory=list, metavar="TEXT", help="manual prompts; [name] placeholders are expanded "
                                                          "from `placeholders` (origin 'template'), else 'manual'")
    manual_file: Path | None = field(None, help="text file of manual prompts, one per line (# comments skipped)")
    placeholders: dict[str, list[str]] = field(
        default_factory=dict, flags=("--placeholder",), metavar="NAME=VALUE", help="values of each [name] placeholder of manual prompts, e.g. "
                                   "{location: [a train station, a stadium]}; several placeholders expand to every "
                                   "combination")
    locations: list[str] = field(default_factory=list, flags=("--location",), metavar="TEXT",
                                 help="shorthand for placeholders: {location: [...]}")
    prefix: str = field("", help="text put before every prompt, e.g. 'large crowd'")
    prefix_manual: bool = field(True, help="also put the prefix before manual prompts")
    suffix: str = field("none", choices=("none", "grayscale"),
                        help="'grayscale': end each prompt with grayscale_suffix or color_suffix, read from its source "
                             "image (prompts without a source image get none)")
    grayscale_suffix: str = field("black and white image", help="suffix for grayscale sources")
    color_suffix: str = field("color image", help="suffix for colour sources")
    separator: str = field(", ", help="joins prefix, text and suffix: 'large crowd, <caption>, color image'")
    class_templates: list[str] = field(
        default_factory=list, flags=("--class-template",), metavar="T", help="classification only: templates with {label} (class name) and optionally "
                                   "{caption}, e.g. 'a photo of a {label}' (one prompt per class and suffix; its "
                                   "sources are the class's images) or '{label}, {caption}' (one per caption)")
    dedupe: bool = field(True, help="merge prompts with the same final text and label (source ids concatenated)")
    max_prompts: int | None = field(None, help="keep at most this many prompts (a seeded random subset, bag order)")
    seed: int = field(0, help="seed of the max_prompts subset")
    real: str | None = field(None, help="a real dataset (folder from `promptmix real ...` or Hub id) to read the "
                                        "task, class names and source images from instead of captions, for bags "
                                        "that need none (manual prompts, {label} templates); set by `promptmix "
                                        "run` when there is no caption section")
    real_revision: str | None = field(None, help="dataset revision when `real` is a Hub id")
    split: str = field("train", help="split of `real` whose images are the sources")
    out: Path | None = field(None, runtime=True, help="the prompt bag folder (default RUN/prompts; required with "
                                                      "--real when no run folder is given)")
    force: bool = field(False, runtime=True, help="replace a non-empty --out folder that `promptmix prompts` did "
                                                  "not write (never an input, nor the run folder)")
    tokenizer: str | None = field(None, runtime=True, help="tokenizer or diffusers pipeline (id or folder) to count "
                                                           "the prompts that will be truncated")
    tokenizer_revision: str | None = field(None, runtime=True, help="revision of `tokenizer` when it is a Hub id")

    def validate(self) -> None:
        for name in ("manual", "locations", "class_templates"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                self.fail(name, "a list of strings")
        if not isinstance(self.placeholders, dict) or not all(
                isinstance(k, str) and isinstance(v, (list, tuple)) and v and all(isinstance(x, str) for x in v)
                for k, v in self.placeholders.items()):
            self.fail("placeholders", "a mapping of placeholder name -> non-empty list of strings")
        if self.locations and "location" in self.placeholders:
            self.fail("locations", "either `locations` or `placeholders.location`, not both")
        for t in self.class_templates:
            names = _format_fields(t)
            if names is None or "label" not in names or not names <= {"label", "caption"}:
                self.fail("class_templates", "templates containing {label} and optionally {caption} "
                                             f"(no other {{...}} fields); bad template: {t!r}")
        if self.max_prompts is not None and self.max_prompts < 1:
            self.fail("max_prompts", "null or an integer >= 1")

    def all_placeholders(self) -> dict[str, list[str]]:
        out = {k: list(v) for k, v in self.placeholders.items()}
        if self.locations:
            out["location"] = list(self.locations)
        return out

    def needs_captions(self) -> bool:
        """Captions are prompts (``use_captions``) or fill a ``{caption}`` class template; without them the bag
        can be built from the real dataset alone (manual prompts, ``{label}``-only templates)."""
        return self.use_captions or any("caption" in (_format_fields(t) or ()) for t in self.class_templates)


def _format_fields(template: str) -> set[str] | None:
    import string

    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError:
        return None
