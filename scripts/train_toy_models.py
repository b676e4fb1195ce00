"""Train the toy world's models on a CPU and ship them in the package (``src/promptmix/toy/models``).

    python scripts/train_toy_models.py                      # everything (about 45 min on 2 cores)
    python scripts/train_toy_models.py --only counter_a     # one model again; the manifest keeps the others
    python scripts/train_toy_models.py --quick --out /tmp/m # a few steps of each, to check the script

Models (``promptmix.toy.train``; every one is trained from the toy world alone, seeded, nothing downloaded):

    sd          a StableDiffusionPipeline (AutoencoderKL + UNet2DConditionModel + CLIPTextModel + tokenizer)
    captioner   a BLIP captioner (BlipForConditionalGeneration + BlipProcessor)
    counter_a   a CSRNet-layout counter (width / 4), promptmix's counting-folder format
    counter_b   a DM-Count-layout counter (width / 4)

Each model is trained into a temporary folder and renamed into place when done. ``manifest.json`` records the
script, seeds, toy-world settings, steps, wall time, final losses, evaluations and the sha256 of every file;
``train_log.txt`` is the log of every run (appended), and ``samples.png`` shows what the pipeline draws.
``promptmix.toy.models.check_manifest`` verifies the shipped files against the manifest.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from filelock import FileLock  # noqa: E402

from promptmix.toy import models as toy_models  # noqa: E402
from promptmix.toy import train as T  # noqa: E402
from promptmix.toy.world import WorldSettings  # noqa: E402

STEPS = {  # full run / --quick
    "counter_a": (2000, 3), "counter_b": (2000, 3), "captioner": (1500, 3), "sd_vae": (1500, 3), "sd_unet": (2600, 3),
}
SCENES = {"full": {"counter": 3000, "captioner": 3000, "sd": 4000}, "quick": {"counter": 40, "captioner": 40, "sd": 40}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", choices=toy_models.NAMES, help="train only these (default: all)")
    p.add_argument("--out", default=str(toy_models.MODELS_DIR), help="folder of the models (default: the package's)")
    p.add_argument("--quick", action="store_true", help="a few steps of each on a few scenes (a check, not models)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sd-vae-steps", type=int, default=None, help="autoencoder steps of sd (default %d)" % STEPS["sd_vae"][0])
    p.add_argument("--sd-unet-steps", type=int, default=None, help="U-Net steps of sd (default %d)" % STEPS["sd_unet"][0])
    p.add_argument("--sd-unet-batch", type=int, default=32)
    p.add_argument("--sd-decoder-steps", type=int, default=2000,
                   help="steps of decoder-only fine-tuning of sd's autoencoder (sharper images from the same latents)")
    p.add_argument("--sd-vae-from", default=None, metavar="DIR",
                   help="start sd from this trained autoencoder folder (skips its first phase; its sha256 goes in "
                        "the manifest)")
    p.add_argument("--sd-unet-from", default=None, metavar="DIR",
                   help="go on training this sd pipeline folder (its autoencoder, tokenizer, U-Net and text encoder) "
                        "for --sd-unet-steps more steps; the manifest keeps its entry under 'continued_from'")
    p.add_argument("--sd-lr", type=float, default=1e-3, help="peak learning rate of sd's U-Net (default 1e-3)")
    p.add_argument("--sd-snr-gamma", type=float, default=0.0,
                   help="Min-SNR loss weighting gamma of sd's U-Net, e.g. 5 (default 0: the plain epsilon MSE the "
                        "shipped sd was trained with)")
    p.add_argument("--sd-vae-channels", default="16,32,32",
                   help="autoencoder block widths; their number - 1 sets the scale factor (default 16,32,32: 4)")
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mode = "quick" if args.quick else "full"
    step = 1 if args.quick else 0
    world = WorldSettings()
    names = args.only or list(toy_models.NAMES)
    log_path = out / toy_models.LOG_NAME
    command = "python scripts/train_toy_models.py " + " ".join(argv if argv is not None else sys.argv[1:])

    def log(line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"{stamp} {line}", flush=True)
        with log_path.open("a", encoding="utf-8") as f:
            f.write(f"{stamp} {line}\n")

    log(f"== {command.strip()}  ({time.strftime('%Y-%m-%d')}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {platform.machine()})")
    unet_from_files, previous = None, None
    if "sd" in names and args.sd_unet_from:
        # the pipeline this run goes on training (read now: it may be the folder this run replaces): its hashes,
        # and its own manifest entry when it has one
        unet_from_files = toy_models.file_hashes(args.sd_unet_from)
        previous = (toy_models.read_manifest(Path(args.sd_unet_from).parent) or {}).get("models", {}).get("sd")
    for name in names:
        tmp = out / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        if name in ("counter_a", "counter_b"):
            trained = T.train_counter(tmp, architecture=toy_models.COUNTER_ARCH[name],
                                      steps=STEPS[name][step], seed=args.seed, world=world,
                                      n_scenes=SCENES[mode]["counter"], n_eval=20 if args.quick else 200,
                                      log=log, name=name)
        elif name == "captioner":
            trained = T.train_captioner(tmp, steps=STEPS["captioner"][step], seed=args.seed, world=world,
                                        n_scenes=SCENES[mode]["captioner"], n_eval=20 if args.quick else 200,
                                        log=log)
        else:
            trained = T.train_generator(tmp, vae_steps=args.sd_vae_steps or STEPS["sd_vae"][step],
                                        unet_steps=args.sd_unet_steps or STEPS["sd_unet"][step],
                                        unet_batch=args.sd_unet_batch, decoder_steps=0 if args.quick else
                                        args.sd_decoder_steps, vae_from=args.sd_vae_from,
                                        vae_channels=tuple(int(c) for c in args.sd_vae_channels.split(",")),
                                        unet_from=args.sd_unet_from, lr=args.sd_lr,
                                        snr_gamma=args.sd_snr_gamma or None,
                                        seed=args.seed, world=world, n_scenes=SCENES[mode]["sd"], log=log)
        final = out / name
        if final.exists():
            shutil.rmtree(final)  # this script's own earlier model (the folder is the package's)
        os.replace(tmp, final)
        trained.folder = final
        entry = trained.to_dict()
        if name == "sd" and args.sd_vae_from:
            entry["vae_from_files"] = toy_models.file_hashes(args.sd_vae_from)
        if name == "sd" and args.sd_unet_from:
            entry["unet_from_files"] = unet_from_files
            if previous and previous.get("files") == unet_from_files:
                entry["continued_from"] = previous
                entry["total_unet_steps"] = previous.get("total_unet_steps", previous["steps"]) + trained.steps
                entry["total_seconds_with_previous"] = round(
                    previous.get("total_seconds_with_previous", previous["seconds"]) + trained.seconds, 1)
        entry.update({"seconds": round(trained.seconds, 1), "final_loss": round(trained.final_loss, 5),
                      "files": toy_models.file_hashes(final), "command": command.strip(), "mode": mode})
        if name == "sd":
            T.sample_grid(final, out / toy_models.SAMPLES_NAME, size=world.size)
            log(f"[sd] wrote {out / toy_models.SAMPLES_NAME}")
        log(f"[{name}] done in {trained.seconds:.0f} s -> {final}")
        with FileLock(str(out / ".manifest.lock")):  # two runs of this script (say --only sd beside the rest)
            manifest = toy_models.read_manifest(out) or {"models": {}}
            manifest["models"][name] = entry
            manifest.update({"script": "scripts/train_toy_models.py", "seed": args.seed, "world": world.to_dict(),
                         "scene_seeds": {k: list(v) for k, v in T.SCENE_SEEDS.items()},
                         "torch": torch.__version__, "total_seconds": round(sum(
                             m["seconds"] for m in manifest["models"].values()), 1)})
            toy_models.write_manifest(out, manifest)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    log(f"== done: {', '.join(names)}; the folder holds {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
