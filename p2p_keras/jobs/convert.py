"""The official pix2pix generators (junyanz/pytorch-CycleGAN-and-pix2pix) converted to Keras.

``python -m p2p_keras convert-official facades_label2photo --out facades.keras`` downloads the
paper's own generator and writes it as a `.keras` file that works on every backend.
"""

import hashlib
import pathlib

OFFICIAL_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/{}.pth"
OFFICIAL_MODELS = {  # the official pretrained generators and the direction each expects
    "edges2shoes": "AtoB", "sat2map": "AtoB", "map2sat": "BtoA", "facades_label2photo": "BtoA",
    "day2night": "BtoA",
}  # fmt: skip


def convert_official(source, out=None, *, direction=None, dropout=0.5, cache_dir=None):
    """Converts an official pix2pix `UnetGenerator` state dict into a Keras generator.

    Depth, ngf, norm (batch or instance) and channels are read from the state dict. Reading it
    needs PyTorch (else `ImportError`); a file that is not such a state dict raises `ValueError`
    naming its first wrong key.

    Args:
        source: a state-dict file (``latest_net_G.pth``) or an official name (`OFFICIAL_MODELS`),
            downloaded into `cache_dir` (default the Keras cache), printing its sha256.
        out: where to write the ``.keras`` file, with the direction recorded in it.
        direction: default the official name's, if any.

    Example:
    >>> generator = convert_official("facades_label2photo", "facades.keras")
    """
    from p2p_keras.generator import build_unet_generator
    from p2p_keras.inference import save_model

    path = _fetch(source, cache_dir)
    direction = direction or OFFICIAL_MODELS.get(str(source))
    state = _read_state_dict(path)
    depth, filters, norm, channels = _structure(state, path)
    generator = build_unet_generator(
        (2**depth, 2**depth, channels[0]), channels[1], filters=filters, norm=norm,
        dropout=dropout, name="official_unet_generator",
    )  # fmt: skip
    layers = [(generator.get_layer(name), prefix) for name, prefix in _layer_prefixes(depth, norm)]
    counts = any(key.endswith("num_batches_tracked") for key in state)
    expected = {key for layer, prefix in layers for key in _keys(layer, prefix, counts)}
    if norm == "instance":  # statistics of InstanceNorm2d(track_running_stats=True): unused
        stats = ("running_mean", "running_var", "num_batches_tracked")
        state = {k: v for k, v in state.items() if not k.endswith(stats)}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        what = f"missing key {missing[0]!r}" if missing else f"unexpected key {unexpected[0]!r}"
        raise ValueError(f"{path}: not an official UnetGenerator state dict ({what})")
    for layer, prefix in layers:
        values = [state[key] for key in _keys(layer, prefix)]
        if not layer.name.endswith("_batchnorm"):
            # Conv2d [out, in, kh, kw] and ConvTranspose2d [in, out, kh, kw] -> [kh, kw, ., .]
            values[0] = values[0].transpose(2, 3, 1, 0)
        shapes, got = [tuple(w.shape) for w in layer.weights], [v.shape for v in values]
        if shapes != got:
            raise ValueError(f"{path}: {prefix} has shapes {got}, the generator needs {shapes}")
        layer.set_weights(values)
    if out is not None:
        save_model(generator, out, info={"direction": direction, "source": str(source)})
    return generator


def _fetch(source, cache_dir):
    if str(source) not in OFFICIAL_MODELS:
        path = pathlib.Path(source)
        if not path.is_file():
            names = ", ".join(OFFICIAL_MODELS)
            raise FileNotFoundError(f"{path}: no such file, nor an official model ({names})")
        return path
    import keras

    if cache_dir is not None:  # Keras falls back to /tmp/.keras for a folder not yet there
        pathlib.Path(cache_dir).mkdir(parents=True, exist_ok=True)
    name, url = f"pix2pix_{source}.pth", OFFICIAL_URL.format(source)
    path = pathlib.Path(keras.utils.get_file(name, url, cache_dir=cache_dir, cache_subdir="models"))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    print(f"{source}: {path} sha256 {digest}")
    return path


def _read_state_dict(path):
    try:
        import torch
    except ImportError as error:
        raise ImportError("reading a .pth file needs PyTorch: pip install torch") from error
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure means the file is not a state dict
        raise ValueError(f"{path}: not a PyTorch state dict ({error})") from error
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a state dict")
    state.pop("_metadata", None)
    return {key: value.detach().float().numpy() for key, value in state.items()}


def _block(level):
    """The key prefix of level `level`'s nn.Sequential (1: the outermost block)."""
    return "model.model" if level == 1 else "model.model.1.model" + ".3.model" * (level - 2)


def _structure(state, path):
    first, last = state.get("model.model.0.weight"), state.get("model.model.3.weight")
    if first is None or last is None:
        key = "model.model.0.weight" if first is None else "model.model.3.weight"
        raise ValueError(f"{path}: not an official UnetGenerator state dict (missing key {key!r})")
    depth = 2
    while f"{_block(depth + 1)}.1.weight" in state:
        depth += 1
    norm = "batch" if f"{_block(2)}.2.weight" in state else "instance"
    if norm == "instance" and "model.model.0.bias" not in state:
        raise ValueError(f"{path}: a UnetGenerator without norm and bias is not supported")
    return depth, first.shape[0], norm, (first.shape[1], last.shape[1])


def _layer_prefixes(depth, norm):
    """(Keras layer, state-dict prefix) pairs; see `build_unet_generator` for the names."""
    pairs = [("down1_conv", "model.model.0"), ("output_convT", "model.model.3")]
    for level in range(2, depth + 1):
        block, up = _block(level), depth - level + 1
        inner = level == depth
        pairs += [(f"down{level}_conv", f"{block}.1")]
        pairs += [(f"up{up}_convT", f"{block}.{3 if inner else 5}")]
        if norm == "batch":  # the instance norm layers have no weights
            pairs += [(f"down{level}_batchnorm", f"{block}.2")] if not inner else []
            pairs += [(f"up{up}_batchnorm", f"{block}.{4 if inner else 6}")]
    return pairs


def _keys(layer, prefix, counts=False):
    """The state-dict keys of `layer`'s weights, in order (`counts`: + ``num_batches_tracked``)."""
    if layer.name.endswith("_batchnorm"):
        stats = ("weight", "bias", "running_mean", "running_var")
        stats += ("num_batches_tracked",) if counts else ()
        return [f"{prefix}.{name}" for name in stats]
    return [f"{prefix}.weight"] + ([f"{prefix}.bias"] if layer.use_bias else [])
