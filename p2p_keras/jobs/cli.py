"""Command line: ``python -m p2p_keras COMMAND`` (or ``p2p-keras COMMAND``).

Each command is a thin layer over a package function; ``--help`` on any command lists its
options.
"""

import argparse
import pathlib
import sys

from p2p_keras.precision import PRECISIONS


def _size(text):
    """Parses "256" or "256x512" (height x width)."""
    if "x" in text:
        height, width = text.lower().split("x")
        return int(height), int(width)
    return int(text)


def _add_train(commands):
    parser = commands.add_parser(
        "train",
        help="train pix2pix (no --data: the embedded synthetic facades, offline)",
        description="Train pix2pix. Without --data it trains on the embedded synthetic facades.",
    )
    parser.add_argument("--data", help="dataset name (facades, maps, ...) or folder")
    parser.add_argument("--out", default="runs/pix2pix", help="run folder (default runs/pix2pix)")
    parser.add_argument("--epochs", type=int, default=200, help="total epochs (paper: 200)")
    parser.add_argument("--decay-epochs", type=int, help="final epochs of linear LR decay")
    parser.add_argument("--steps-per-epoch", type=int, help="batches per epoch")
    parser.add_argument("--validation-steps", type=int, help="validation batches per epoch")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--direction", choices=("AtoB", "BtoA"))
    parser.add_argument("--image-size", type=_size, default=256, help="256 or HxW")
    parser.add_argument("--gan-loss", choices=("vanilla", "lsgan"), default="vanilla")
    parser.add_argument("--l1-weight", type=float, default=100.0, help="lambda (paper: 100)")
    parser.add_argument("--lr", type=float, default=2e-4, dest="learning_rate")
    parser.add_argument(
        "--norm", choices=("batch", "sync_batch", "instance", "none"), default="batch"
    )
    parser.add_argument("--patch-size", type=int, default=70, choices=(1, 16, 34, 70, 142, 286))
    parser.add_argument(
        "--filters", type=int, default=64, help="first-layer width (paper: 64; less is faster)"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="float32 (paper), mixed_bfloat16, mixed_float16, or auto: mixed float16 on a GPU, "
        "mixed bfloat16 on a CPU with AVX512-BF16/AMX, else float32",
    )
    parser.add_argument(
        "--mirrored",
        action="store_true",
        help="train on every visible GPU with tf.distribute.MirroredStrategy; --batch-size is "
        "then the global batch (the paper's 1 per GPU: the number of GPUs)",
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="bit-identical runs for a given --seed on the same machine (slower)",
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument(
        "--backup-every", type=int, help="steps between backups (default: each epoch's end)"
    )
    parser.add_argument("--data-dir", default="data", help="where datasets are stored")
    parser.add_argument(
        "--verbose", default="auto", choices=("auto", "0", "1", "2"), help="Keras fit verbosity"
    )
    parser.set_defaults(run=_train)


def _train(args):
    import tensorflow as tf

    from p2p_keras.jobs.train import train

    train(
        args.data,
        args.out,
        epochs=args.epochs,
        decay_epochs=args.decay_epochs,
        steps_per_epoch=args.steps_per_epoch,
        validation_steps=args.validation_steps,
        batch_size=args.batch_size,
        direction=args.direction,
        image_size=args.image_size,
        gan_loss=args.gan_loss,
        l1_weight=args.l1_weight,
        learning_rate=args.learning_rate,
        norm=None if args.norm == "none" else args.norm,
        patch_size=args.patch_size,
        filters=args.filters,
        precision=args.precision,
        seed=args.seed,
        deterministic=args.deterministic,
        resume=args.resume,
        backup_every=args.backup_every,
        data_dir=args.data_dir,
        strategy=tf.distribute.MirroredStrategy() if args.mirrored else None,
        verbose=args.verbose if args.verbose == "auto" else int(args.verbose),
    )
    print(f"Wrote {args.out}/generator.keras, samples/, history.csv and logs/")
    return 0


def _add_test_time_options(parser):
    parser.add_argument(
        "--dropout",
        choices=("on", "off"),
        default="on",
        help="keep dropout on at test time, as the paper does (default on)",
    )
    parser.add_argument(
        "--bn-stats",
        choices=("batch", "moving"),
        default="batch",
        help="batch norm statistics: the image's own (paper, default) or training averages",
    )


def _add_translate(commands):
    parser = commands.add_parser(
        "translate",
        help="translate images with a trained generator",
        description=(
            "Translate images of any size and channel count. Each image is resized to the "
            "generator's input size, translated, and resized back to its own size; gray or "
            "RGBA inputs are converted to the generator's channels. Outputs are PNGs named "
            "after the inputs."
        ),
    )
    parser.add_argument("inputs", nargs="+", help="image files")
    parser.add_argument("--model", required=True, help="generator.keras or pix2pix.keras")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--paired", action="store_true", help="inputs are aligned A|B pairs: use the input half"
    )
    parser.add_argument("--direction", choices=("AtoB", "BtoA"), default="AtoB")
    _add_test_time_options(parser)
    parser.set_defaults(run=_translate)


def _translate(args):
    from p2p_keras.inference import load_generator, translate_files

    generator = load_generator(args.model)
    written = translate_files(
        generator,
        args.inputs,
        args.out,
        paired=args.paired,
        direction=args.direction,
        dropout=args.dropout == "on",
        batch_stats=args.bn_stats == "batch",
    )
    print(f"Wrote {len(written)} image(s) to {args.out}")
    return 0


def _add_evaluate(commands):
    parser = commands.add_parser(
        "evaluate",
        help="score a generator (L1, PSNR, SSIM, KID, FID) and write an HTML report",
        description=(
            "Score a generator on a split and write metrics.json and an index.html of input | "
            "output | target. KID and FID need InceptionV3 ImageNet weights (downloaded by "
            "Keras, or --inception-weights FILE); without them they are reported unavailable. "
            "Prefer KID on small test sets: FID is strongly biased at ~100 images."
        ),
    )
    parser.add_argument("--model", required=True, help="generator.keras or pix2pix.keras")
    parser.add_argument("--data", help="dataset name or folder (default: synthetic facades)")
    parser.add_argument("--split", default="val", help="split to score (default val, else test)")
    parser.add_argument("--out", help="folder for metrics.json and the report")
    parser.add_argument("--direction", choices=("AtoB", "BtoA"))
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--inception-weights", default="imagenet", help="local .h5 file")
    parser.add_argument("--max-images", type=int)
    _add_test_time_options(parser)
    parser.set_defaults(run=_evaluate)


def _evaluate(args):
    from p2p_keras.evaluation import evaluate_command

    result = evaluate_command(
        args.model,
        args.data,
        split=args.split,
        out=args.out,
        dropout=args.dropout == "on",
        batch_stats=args.bn_stats == "batch",
        data_dir=args.data_dir,
        direction=args.direction,
        inception_weights=args.inception_weights,
        max_images=args.max_images,
    )
    for key in ("l1", "psnr", "ssim", "kid", "fid"):
        if key in result:
            value = result[key]
            print(f"{key:>5}: {'unavailable' if value is None else f'{value:.4f}'}")
    for key, reason in result.get("unavailable", {}).items():
        print(f"{key}: {reason}")
    print(f"{result['n_images']} images, {result['mode']}")
    if args.out:
        print(f"Wrote {args.out}/metrics.json and {args.out}/index.html")
    return 0


def _add_ablate(commands):
    parser = commands.add_parser(
        "ablate", help="train and score the paper's ablations (loss, generator or patch)"
    )
    parser.add_argument("--study", required=True, choices=("loss", "generator", "patch"))
    parser.add_argument("--data", help="dataset name or folder (default: synthetic facades)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--steps-per-epoch", type=int)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--out", help="output folder (default runs/ablation_STUDY)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--variants", nargs="+", help="only these variants")
    parser.add_argument(
        "--filters", type=int, default=64, help="first-layer width (paper: 64; less is faster)"
    )
    parser.set_defaults(run=_ablate)


def _ablate(args):
    from p2p_keras.jobs.ablate import run_ablation

    run_ablation(
        args.study,
        data=args.data,
        out=args.out,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        image_size=args.image_size,
        seed=args.seed,
        data_dir=args.data_dir,
        variants=args.variants,
        filters=args.filters,
        verbose="auto",
    )
    out = args.out or f"runs/ablation_{args.study}"
    print((pathlib.Path(out) / "results.md").read_text())
    return 0


def _add_bench(commands):
    from p2p_keras.jobs import bench

    parser = commands.add_parser(
        "bench",
        help="time the TF tutorial's loop against fit, mixed precision, XLA and the pipeline",
    )
    bench.add_arguments(parser)
    parser.set_defaults(run=bench.run_from_args)


def _add_make_synthetic(commands):
    parser = commands.add_parser(
        "make-synthetic", help="write the embedded synthetic facades dataset"
    )
    parser.add_argument("--out", default="data/synthetic_facades")
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--val", type=int, default=100)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256)
    parser.set_defaults(run=_make_synthetic)


def _make_synthetic(args):
    from p2p_keras.jobs.synthetic import make_synthetic_facades

    out = make_synthetic_facades(
        args.out, train=args.train, val=args.val, test=args.test, seed=args.seed, size=args.size
    )
    print(f"Synthetic facades in {out}")
    return 0


def _add_check_data(commands):
    parser = commands.add_parser("check-data", help="list every bad file of a paired dataset")
    parser.add_argument("root", help="dataset folder (aligned or A/ + B/ layout)")
    parser.set_defaults(run=_check_data)


def _check_data(args):
    from p2p_keras.data import check_paired, format_report

    bad = check_paired(args.root)
    print(format_report(bad))
    return 1 if bad else 0


def _add_combine(commands):
    parser = commands.add_parser(
        "combine",
        help="write the aligned A|B layout from ROOT/A/<split>/ + ROOT/B/<split>/ folders",
    )
    parser.add_argument("a_root", help="folder of A images, with one subfolder per split")
    parser.add_argument("b_root", help="folder of B images, same split subfolders and names")
    parser.add_argument("out", help="output folder for the aligned layout")
    parser.set_defaults(run=_combine)


def _combine(args):
    from p2p_keras.data import write_aligned

    counts = write_aligned(args.a_root, args.b_root, args.out)
    print(", ".join(f"{split}: {count}" for split, count in counts.items()))
    return 0


def _add_download(commands):
    parser = commands.add_parser("download", help="download a pix2pix dataset (facades, maps...)")
    parser.add_argument("name", help="facades, maps, edges2shoes, edges2handbags, night2day")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--manual-dir", help="folder holding NAME.tar.gz fetched by hand")
    parser.set_defaults(run=_download)


def _download(args):
    from p2p_keras.jobs.datasets import download

    path = download(args.name, args.data_dir, manual_dir=args.manual_dir)
    print(f"{args.name} is in {path}")
    return 0


def build_parser():
    """The argument parser with every command."""
    parser = argparse.ArgumentParser(
        prog="python -m p2p_keras", description="Pix2Pix in Keras 3: train, translate, data."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_train,
        _add_translate,
        _add_evaluate,
        _add_ablate,
        _add_bench,
        _add_make_synthetic,
        _add_check_data,
        _add_combine,
        _add_download,
    ):
        add(commands)
    return parser


def main(argv=None):
    """Runs a command; returns the exit status. Expected errors print one line, not a trace."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
