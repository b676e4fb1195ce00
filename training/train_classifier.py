#!/usr/bin/env python
"""Train an image classifier (ResNet-18, WRN-28-2, WRN-28-10) on real + fake data.

Run with `accelerate launch training/train_classifier.py ...` (any number of processes) or plain
`python training/train_classifier.py ...`; `--help` lists every flag, `--config FILE.yaml` reads them
from YAML (flags override it). The loop, the mixing strategies, the models and the metrics live
in `promptmix.training`; this file only hands the command line to it.
"""

import sys

from promptmix.training.train.stage import main

if __name__ == "__main__":
    sys.exit(main("classification"))
