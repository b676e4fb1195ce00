"""The learned toy world: procedural crowd scenes (:mod:`.world`) and small models trained on them.

``scripts/train_toy_models.py`` trains, on a CPU and from the toy world alone, a text-to-image pipeline, a
captioner and two counting annotators (:mod:`.train`), and ships them in ``promptmix/toy/models``
(:mod:`.models` finds them and checks their manifest). ``promptmix demo`` uses them by default.
"""
