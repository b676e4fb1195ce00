"""Dataset cards of published fake datasets: a Jinja template shipped in the package, its facts and figures.

``load_card_inputs(RUN)`` reads a finished run, ``make_card_figures`` writes the PNG figures,
``render_card`` returns a ``huggingface_hub.DatasetCard``. The template and every variable are
documented in ``dataset_cards/README.md`` at the top of the repository; a rendered example lives
in ``dataset_cards/example/``.
"""

from ..utils.lazy import lazy_exports


_EXPORTS = {
    "CITATIONS": ".card", "KNOWN_GENERATORS": ".card", "KNOWN_SOURCES": ".card", "TEMPLATE_PATH": ".card",
    "CardInputs": ".card", "LicenseInfo": ".card", "card_context": ".card", "card_from_context": ".card",
    "combine_licenses": ".card", "generator_license": ".card", "history_entry": ".card", "license_file_text":
    ".card", "load_card_inputs": ".card", "make_card_figures": ".card", "read_hub_folder": ".card", "render_card":
    ".card", "source_dataset": ".card",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
