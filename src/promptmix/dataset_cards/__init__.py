"""Dataset cards of published fake datasets: a Jinja template shipped in the package, its facts and figures.

``load_card_inputs(RUN)`` reads a finished run, ``make_card_figures`` writes the PNG figures,
``render_card`` returns a ``huggingface_hub.DatasetCard``. The template and every variable are
documented in ``dataset_cards/README.md`` at the top of the repository; a rendered example lives
in ``dataset_cards/example/``.
"""

from .card import (CITATIONS, KNOWN_GENERATORS, KNOWN_SOURCES, TEMPLATE_PATH, CardInputs, LicenseInfo,
                   card_context, card_from_context, combine_licenses, generator_license, history_entry, license_file_text,
                   load_card_inputs, make_card_figures, read_hub_folder, render_card, source_dataset)

__all__ = ["CITATIONS", "KNOWN_GENERATORS", "KNOWN_SOURCES", "TEMPLATE_PATH", "CardInputs", "LicenseInfo",
           "card_context", "card_from_context", "combine_licenses", "generator_license", "history_entry", "license_file_text",
           "load_card_inputs", "make_card_figures", "read_hub_folder", "render_card", "source_dataset"]
