#!/usr/bin/env python
"""Train a crowd counter (CSRNet or ResCSRNet) on density maps on real + fake data.

Run with `accelerate launch training/train_counter.py ...` (any number of processes) or plain
`python training/train_counter.py ...`; `--help` lists every flag, `--config FILE.yaml` reads them
from YAML (flags override it). The loop, the mixing strategies, the models and the metrics live
in `promptmix.training`; this file only hands the command line to it.
"""

import sys

from promptmix.training.train.stage import main

if __name__ == "__main__":
    sys.exit(main("counting"))
