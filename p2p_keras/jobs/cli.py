"""Command line: ``python -m p2p_keras COMMAND``; each command imports its job when it runs, so
``--help`` answers before TensorFlow starts. Expected errors (missing or damaged files, bad
images, refused downloads, a NaN loss) end in one ``error:`` line and exit 1."""

import argparse
import sys

from p2p_keras import project_dir
from p2p_keras.jobs import ablate, bench
from p2p_keras.jobs.convert import OFFICIAL_MODELS
from p2p_keras.jobs.options import TrainOptions, add_arguments


def _train(args):
    from p2p_keras.jobs.train import train

    options = TrainOptions.from_args(args)
    train(options)
    out = options.out or project_dir() / "runs" / "pix2pix"
    print(f"Wrote {out}/generator.keras, samples/, history.csv and logs/")


def _add_test_time_options(parser, dropout="on", bn_stats="batch"):
    text = "dropout at test time; the paper keeps it on (default %(default)s)"
    parser.add_argument("--dropout", choices=("on", "off"), default=dropout, help=text)
    text = "batch norm statistics: the image's own (the paper) or the training averages"
    text += " (default %(default)s)"
    parser.add_argument("--bn-stats", choices=("batch", "moving"), default=bn_stats, help=text)


def _test_time(args):
    return {"dropout": args.dropout == "on", "batch_stats": args.bn_stats == "batch"}


def _translate(args):
    """Translate images of any size and channel count: each is resized to the generator's input,
    translated and resized back; gray or RGBA inputs are converted. Outputs are PNGs named after
    the inputs."""
    from p2p_keras.inference import load_generator, translate_files

    options = {"paired": args.paired, "direction": args.direction, **_test_time(args)}
    written = translate_files(load_generator(args.model), args.inputs, args.out, **options)
    print(f"Wrote {len(written)} image(s) to {args.out}")


def _evaluate(args):
    """Score a generator on a split beside the mean photo, the input as output and (FCN-score) the
    real photos, in the paper's test-time mode by default, seeded: the same command twice prints the
    same numbers. With --out, write metrics.json (every class's FCN-score too) and samples.png
    (input | output | target). KID and FID need InceptionV3 ImageNet weights (downloaded by Keras,
    or --inception-weights FILE); without them they are reported unavailable."""
    from p2p_keras.jobs.evaluate import evaluate, format_table

    keys = ("out", "direction", "data_dir", "max_images", "seed", "inception_weights")
    settings = {key: getattr(args, key) for key in keys}
    result = evaluate(args.model, args.data, args.split, **settings, **_test_time(args))
    print(format_table(result, per_class=args.per_class))


def _export(args):
    from p2p_keras.inference import export, load_generator

    print(f"Wrote {export(load_generator(args.model), args.out, format=args.format)}")


def _ablate(args):
    """Train every variant of a study with the same options and seed, score each, and write
    results.md next to the paper's table. The options a study varies are set per variant."""
    options = TrainOptions.from_args(args)
    evaluation = {"split": args.eval_split, "max_images": args.max_eval_images, **_test_time(args)}
    ablate.run_ablation(args.study, options, variants=args.variants, evaluation=evaluation)
    print((ablate.study_dir(args.study, options) / "results.md").read_text())


def _make_synthetic(args):
    from p2p_keras.jobs.synthetic import make_synthetic_facades

    sizes = {split: getattr(args, split) for split in ("train", "val", "test")}
    written = make_synthetic_facades(args.out, **sizes, seed=args.seed, size=args.size)
    print(f"Synthetic facades in {written}")


def _check_data(args):
    from p2p_keras.data import check_paired, format_report

    bad = check_paired(args.root)
    print(format_report(bad))
    return 1 if bad else 0


def _combine(args):
    from p2p_keras.jobs.datasets import write_aligned

    counts = write_aligned(args.a_root, args.b_root, args.out)
    print(", ".join(f"{split}: {count}" for split, count in counts.items()))


def _download(args):
    from p2p_keras.jobs.datasets import download

    print(f"{args.name} is in {download(args.name, args.data_dir, manual_dir=args.manual_dir)}")


def _convert(args):
    from p2p_keras.inference import model_info
    from p2p_keras.jobs.convert import convert_official

    generator = convert_official(args.source, args.out, direction=args.direction)
    norm = "batch" if any("batchnorm" in layer.name for layer in generator.layers) else "instance"
    direction = model_info(args.out).get("direction") or "no direction recorded"
    shape = f"unet_{generator.input_shape[1]}, ngf {generator.get_layer('down1_conv').filters}"
    print(f"Wrote {args.out}: {shape}, {norm} norm, {direction}")


def _demo(args):
    """Serve an interactive page (no internet needed): a canvas, the CMP facade palette for
    facade models, the translation after each stroke. Default model:
    results/facades_128/generator.keras."""
    from p2p_keras.jobs.demo import serve

    serve(args.model, host=args.host, port=args.port)


def build_parser():
    """The argument parser of every command; it imports no TensorFlow."""
    about = "Pix2Pix in Keras 3: train, translate, data."
    parser = argparse.ArgumentParser(prog="python -m p2p_keras", description=about)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, run, help, description=None):
        # Described by `description`, else the docstring of a command of this module, else `help`.
        own = run.__doc__ if run.__module__ == __name__ else None
        sub = commands.add_parser(name, help=help, description=description or own or help)
        sub.set_defaults(run=run)
        return sub

    add_arguments(command("train", _train, "train pix2pix (without --data: synthetic facades)"))

    sub = command("translate", _translate, "translate images with a trained generator")
    sub.add_argument("inputs", nargs="+", help="image files")
    sub.add_argument("--model", required=True, help="generator.keras or pix2pix.keras")
    sub.add_argument("--out", required=True, help="output folder")
    sub.add_argument("--paired", action="store_true", help="inputs are A|B pairs: use one half")
    sub.add_argument("--direction", choices=("AtoB", "BtoA"), default="AtoB")
    _add_test_time_options(sub)

    text = "score a generator (L1, PSNR, SSIM, KID, FID, FCN-score) beside baselines"
    sub = command("evaluate", _evaluate, text)
    sub.add_argument("--model", required=True, help="generator.keras or pix2pix.keras")
    sub.add_argument("--split", default="val", help="split to score (default val, else test)")
    sub.add_argument("--out", help="folder for metrics.json and samples.png")
    sub.add_argument("--inception-weights", default="imagenet", help="local .h5 file")
    sub.add_argument("--max-images", type=int)
    sub.add_argument("--seed", type=int, default=0, help="seed of the dropout noise (default 0)")
    sub.add_argument("--per-class", action="store_true", help="print each class's FCN-score")
    add_arguments(sub, only=("data", "direction", "data_dir"))
    _add_test_time_options(sub)

    text = "train and score one of the paper's ablation studies (Tables 1-3)"
    sub = command("ablate", _ablate, text)
    sub.add_argument("--study", required=True, choices=tuple(ablate.STUDIES))
    sub.add_argument("--variants", nargs="+", help="only these variants (default: all)")
    sub.add_argument("--eval-split", default="val", help="split to score (default val)")
    sub.add_argument("--max-eval-images", type=int, help="score at most this many images")
    add_arguments(sub)
    sub.set_defaults(**ablate.DEFAULTS)
    _add_test_time_options(sub, dropout="off", bn_stats="moving")

    text = "time the TF tutorial's loop against fit and more"
    bench.add_arguments(command("bench", bench.run_from_args, text))

    sub = command("make-synthetic", _make_synthetic, "write the synthetic facades dataset")
    sub.add_argument("--out", help="folder (default: data/synthetic_facades)")
    for split, count in (("train", 400), ("val", 100), ("test", 100)):
        sub.add_argument(f"--{split}", type=int, default=count, help=f"{split} pairs")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--size", type=int, default=256)

    sub = command("check-data", _check_data, "list every bad file of a paired dataset")
    sub.add_argument("root", help="dataset folder (aligned or A/ + B/ layout)")

    sub = command("combine", _combine, "write A|B pairs from A/<split>/ and B/<split>/ folders")
    sub.add_argument("a_root", help="folder of A images, one subfolder per split")
    sub.add_argument("b_root", help="folder of B images, same subfolders and names")
    sub.add_argument("out", help="output folder for the aligned layout")

    sub = command("download", _download, "download a pix2pix dataset (facades, maps, ...)")
    sub.add_argument("name", help="facades, maps, edges2shoes, edges2handbags, night2day")
    sub.add_argument("--manual-dir", help="folder holding NAME.tar.gz fetched by hand")
    add_arguments(sub, only=("data_dir",))

    text = "convert an official pix2pix generator (PyTorch .pth) into a .keras file"
    about = (
        "Convert a state dict saved by the official pix2pix code (latest_net_G.pth), or download "
        f"an official pretrained one by name ({', '.join(OFFICIAL_MODELS)}) into the Keras cache."
    )
    sub = command("convert-official", _convert, text, about)
    sub.add_argument("source", help="a .pth state dict or an official model name")
    sub.add_argument("--out", required=True, help="the .keras file to write")
    sub.add_argument("--direction", choices=("AtoB", "BtoA"), help="default: the official one")

    sub = command("export", _export, "export a generator to ONNX, LiteRT (.tflite) or SavedModel")
    sub.add_argument("--model", required=True, help="generator.keras or pix2pix.keras")
    sub.add_argument("--format", choices=("onnx", "litert", "saved_model"), default="onnx")
    sub.add_argument("--out", required=True, help=".onnx / .tflite file, or the SavedModel folder")

    text = "draw a label map in the browser and see the generator's translation"
    sub = command("demo", _demo, text)
    sub.add_argument("--model", help="generator.keras (default: the facades showcase model)")
    sub.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sub.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one")
    return parser


def main(argv=None):
    """Runs a command; returns the exit status. Errors a user can fix print one line."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0  # a command returns None when it succeeds
    except Exception as error:
        expected = (ValueError, OSError, ArithmeticError, ImportError)  # ImportError: an extra
        if datasets := sys.modules.get("p2p_keras.jobs.datasets"):  # loaded if it could raise
            expected += (datasets.DownloadError,)
        if not isinstance(error, expected):
            raise  # a bug: show the trace
        print(f"error: {error}", file=sys.stderr)
        return 1
