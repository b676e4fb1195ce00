#!/usr/bin/env python
"""Fine-tune a Stable Diffusion U-Net for Mixing Visual Concepts (image + MVC text conditioning).

Run with `accelerate launch training/finetune_mvc.py ...` (any number of processes) or plain `python`.
The loop, the loss and the saving live in `promptmix.training.finetune`; this file hands the command
line (a YAML file and/or one flag per FinetuneConfig key) to it.
"""

import sys

from promptmix.training.finetune.stage import build_parser, config_from_args, main  # noqa: F401  (the script's API)

if __name__ == "__main__":
    sys.exit(main())
