"""The options of a training run, declared once in `TrainOptions` for `train`, the command line,
ablations and the benchmark: `add_arguments` makes a flag of each field from its metadata (help,
choices). No TensorFlow here, so ``--help`` answers at once."""

import argparse
import dataclasses

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
NORMS = ("batch", "sync_batch", "instance", None)
PATCH_SIZES = (1, 16, 34, 70, 142, 286)


def parse_size(text):
    """Parses "256" or "256x512" (height x width)."""
    height, _, width = str(text).lower().partition("x")
    return (int(height), int(width)) if width else int(height)


def _word(text):
    """Parses a choice: "none" -> None, "true"/"false" -> bool, digits -> int, else the text."""
    words = {"none": None, "true": True, "false": False}
    return words[text.lower()] if text.lower() in words else int(text) if text.isdigit() else text


def _option(default, help, parse=None, *, choices=None, flag=None):
    metadata = {"help": help, "choices": choices, "parse": parse, "flag": flag}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Everything that defines a training run; None means "decided at run time" (see the help).

    Example:
    >>> options = TrainOptions(data="facades", epochs=5, image_size=128)
    >>> train(dataclasses.replace(options, l1_weight=0.0))
    """

    data: str | None = _option(None, "dataset name (facades, ...) or folder; default: synthetic")
    out: str | None = _option(None, "run folder (default: runs/pix2pix)")
    epochs: int = _option(200, "total epochs (paper: 200)")
    decay_epochs: int | None = _option(None, "final epochs of linear LR decay; default: half", int)
    steps_per_epoch: int | None = _option(None, "batches per epoch; default: the whole split", int)
    validation_steps: int | None = _option(None, "validation batches; default: all", int)
    batch_size: int = _option(1, "global batch, split between replicas (paper: 1)")
    direction: str | None = _option(None, "default: the dataset's", choices=("AtoB", "BtoA"))
    image_size: int | tuple = _option(256, "crop size: 256 or HxW", parse_size)
    load_size: int | tuple | None = _option(None, "pre-crop resize; default: 286/256", parse_size)
    gan_loss: str = _option("vanilla", "adversarial loss", choices=("vanilla", "lsgan"))
    l1_weight: float = _option(100.0, "lambda, the L1 weight (paper: 100)")
    gan_weight: float = _option(1.0, "weight of the adversarial loss (0: L1 only)")
    learning_rate: float = _option(2e-4, "Adam's initial rate, both networks", flag="--lr")
    norm: str | None = _option("batch", "in both networks", choices=NORMS)
    skip_connections: bool = _option(True, "U-Net skips (--no-skip-connections: encoder-decoder)")
    patch_size: int = _option(70, "discriminator receptive field", choices=PATCH_SIZES)
    conditional: bool = _option(True, "the discriminator sees the input (cGAN)")
    filters: int = _option(64, "first-layer width of both networks (paper: 64; less is faster)")
    precision: str | None = _option(None, "auto: mixed on a GPU or bf16 CPU", choices=PRECISIONS)
    mirrored: bool = _option(
        False, "data-parallel on every device: MirroredStrategy on TensorFlow, DataParallel on JAX"
    )
    seed: int | None = _option(None, "seed for weights, data order, jitter and dropout", int)
    deterministic: bool = _option(False, "bit-identical runs for a given --seed (slower)")
    init_generator: str | None = _option(
        None, "start G from this .keras generator's weights, D from scratch (fine-tuning)"
    )
    resume: bool = _option(False, "continue the run in --out from its last backup, at its step")
    backup_every: int | None = _option(None, "steps between backups; default: epoch ends only", int)
    data_dir: str | None = _option(None, "where datasets are stored; default: data/")
    samples: int = _option(4, "validation pairs in the sample grids")
    jit_compile: str | bool = _option("auto", "XLA (auto: on a GPU)", choices=("auto", True, False))
    verbose: str | int = _option("auto", "fit verbosity", choices=("auto", 0, 1, 2))

    def __post_init__(self):
        for field in dataclasses.fields(self):
            choices, value = field.metadata["choices"], getattr(self, field.name)
            if choices and value is not None and value not in choices:
                raise ValueError(f"{field.name} must be one of {choices}, got {value!r}")

    @classmethod
    def from_args(cls, args, **overrides):
        """The options parsed by `add_arguments`; fields it left out keep their defaults."""
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.name in args}
        return cls(**{**given, **overrides})


def add_arguments(parser, exclude=(), *, only=None):
    """Adds one flag per `TrainOptions` field (all, or `only` these, less `exclude`) to `parser`."""
    for field in dataclasses.fields(TrainOptions):
        if field.name in exclude or (only is not None and field.name not in only):
            continue
        meta, default, choices = field.metadata, field.default, field.metadata["choices"]
        kwargs = {"dest": field.name, "default": default, "help": meta["help"]}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction  # --flag / --no-flag
        else:
            kwargs["type"] = meta["parse"] or (_word if choices else type(default or ""))
            kwargs["help"] += "" if default is None else " (default: %(default)s)"
        if choices:
            words = [c if isinstance(c, str) else str(c).lower() for c in choices]
            kwargs.update(choices=choices, metavar="{" + ",".join(words) + "}")
        parser.add_argument(meta["flag"] or "--" + field.name.replace("_", "-"), **kwargs)
    return parser
