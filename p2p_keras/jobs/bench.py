"""Training-speed benchmark: the TF tutorial's loop against `Pix2Pix.fit` and its fast paths.

``python -m p2p_keras bench`` (or ``python -m p2p_keras.jobs.bench``) times, on the same networks
(`build_unet_generator`, `build_patchgan_discriminator`) and the same in-memory random batch:

=============  ============================================================================
``tutorial``   the TF pix2pix tutorial's loop: a ``tf.function`` step with two
               ``GradientTape`` s, BCE losses and a simultaneous update of G and D with
               Adam(2e-4, 0.5). Every ratio in the table is relative to this mode.
``fit``        `Pix2Pix.fit` with the package defaults (``jit_compile="auto"``).
``mixed``      `Pix2Pix.fit` under mixed precision: "mixed_bfloat16" on a CPU,
               "mixed_float16" (with dynamic loss scaling) on a GPU.
``xla``        `Pix2Pix.fit` with ``jit_compile=True``.
``no_xla``     `Pix2Pix.fit` with ``jit_compile=False``.
``pipeline``   the `load_paired` input pipeline alone, in training mode (decode, resize,
               random crop and flip), on real JPEG files: the synthetic facades (written on
               first use under ``--data-dir``) or ``--data``. It reports the cached rate
               (every epoch after the first) and the first, decoding, epoch.
``breakdown``  (not in the default set) a profile of one step: forward and backward of each
               network and the optimizer updates, timed separately.
=============  ============================================================================

Each mode runs in its own Python process, so its peak resident memory is its own and a dtype
policy or thread setting cannot leak into the next mode. Warm-up steps (tracing, XLA
compilation) are excluded; the reported step time is the median of the timed steps, each timed
alone (`fit`: a callback reading ``time.perf_counter`` at ``on_train_batch_begin/end``).

``--quality N`` also trains N steps on the real JPEGs in float32 and in mixed precision from
the same seed, and reports the validation L1 of both: mixed precision must not cost accuracy.

Use from Python: `run_benchmark` returns the results as a dict and `format_table` prints them;
`bench_command(argv)` is the command line.
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

MODES = {
    "tutorial": "TF tutorial loop, 2 tapes, simultaneous",
    "fit": 'Pix2Pix.fit, defaults (jit_compile="auto")',
    "mixed": "Pix2Pix.fit, mixed precision",
    "xla": "Pix2Pix.fit, jit_compile=True (XLA)",
    "no_xla": "Pix2Pix.fit, jit_compile=False",
    "pipeline": "tf.data pipeline alone, training mode",
    "breakdown": "one training step, part by part",
}
DEFAULT_MODES = ("tutorial", "fit", "mixed", "xla", "no_xla", "pipeline")
REFERENCE = "tutorial"

_RESULT_FLAG = "--_worker"


# --------------------------------------------------------------------------- public API


def run_benchmark(
    image_size=256,
    batch_size=1,
    *,
    steps=10,
    warmup=3,
    modes=DEFAULT_MODES,
    data=None,
    data_dir="data",
    filters=64,
    norm="batch",
    steps_per_execution=1,
    mixed_policy=None,
    quality=0,
    quality_size=64,
    env=None,
    json_path=None,
    timeout=None,
    verbose=True,
):
    """Runs the benchmark, one process per mode, and returns every figure.

    Args:
        image_size: image side in pixels (networks and random batch).
        batch_size: images per training step.
        steps: timed steps per training mode (the median is reported).
        warmup: untimed steps first (the first one traces, or compiles with XLA).
        modes: names from `MODES`, run in this order. The ratio column needs "tutorial".
        data: dataset folder or name for ``pipeline`` and ``--quality``; None for the
            synthetic facades at 256 under `data_dir` (written on first use).
        data_dir: where the synthetic facades are written or datasets are found.
        filters: first-layer width of both networks (64 in the paper).
        norm: "batch", "sync_batch", "instance" or None, for both networks.
        steps_per_execution: passed to `compile` in the `fit` modes.
        mixed_policy: the ``mixed`` mode's policy; default "mixed_float16" when a GPU is
            visible, else "mixed_bfloat16".
        quality: if > 0, also train this many steps at `quality_size` in float32 and in mixed
            precision and report the validation L1 of each.
        quality_size: image side for the quality check.
        env: extra environment variables for the worker processes (e.g.
            ``{"TF_ENABLE_ONEDNN_OPTS": "0"}``, ``{"TF_NUM_INTEROP_THREADS": "1"}``).
        json_path: if given, the results are also written there as JSON.
        timeout: seconds allowed per worker process (None: no limit).
        verbose: print progress lines while running.

    Returns:
        A dict: ``config``, ``hardware`` (CPU model, cores, GPU name, versions, load),
        ``results`` (one dict per mode: ``images_per_s``, ``s_per_step``, ``ratio``,
        ``peak_rss_mb``, ``gpu_peak_mb``, ``step_times``... or ``error``) and ``quality``.
    """
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {unknown}; choose from {list(MODES)}")
    if steps < 1 or warmup < 0 or batch_size < 1:
        raise ValueError("steps and batch_size must be >= 1 and warmup >= 0")
    config = {
        "image_size": int(image_size),
        "batch_size": int(batch_size),
        "steps": int(steps),
        "warmup": int(warmup),
        "filters": int(filters),
        "norm": norm,
        "steps_per_execution": int(steps_per_execution),
        "mixed_policy": mixed_policy,
        "data": None if data is None else str(data),
        "data_dir": str(data_dir),
        "env": dict(env or {}),
    }
    report = {
        "config": config,
        "hardware": hardware_info(),
        "results": [],
        "quality": None,
    }
    report["hardware"]["load_before"] = _load_average()
    started = time.perf_counter()
    for mode in modes:
        if verbose:
            print(f"[bench] {mode}: {MODES[mode]} ...", flush=True)
        result = run_worker(mode, config, timeout=timeout)
        report["results"].append(result)
        if verbose:
            print(f"[bench] {mode}: {_short(result)}", flush=True)
    if quality:
        report["quality"] = _quality(config, quality, quality_size, timeout, verbose)
    report["hardware"]["load_after"] = _load_average()
    report["wall_s"] = round(time.perf_counter() - started, 1)
    _add_ratios(report["results"])
    for result in report["results"]:
        if result.get("gpu_name") and not report["hardware"].get("gpu"):
            report["hardware"]["gpu"] = result["gpu_name"]
    if json_path:
        path = pathlib.Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_table(report):
    """The benchmark's results as a text table, with the hardware and settings above it."""
    hw, cfg = report["hardware"], report["config"]
    lines = [
        f"p2p_keras bench: {cfg['image_size']}x{cfg['image_size']}, batch {cfg['batch_size']}, "
        f"median of {cfg['steps']} timed steps after {cfg['warmup']} warm-up, "
        f"filters {cfg['filters']}, norm {cfg['norm']}"
        + (
            f", steps_per_execution {cfg['steps_per_execution']}"
            if cfg["steps_per_execution"] > 1
            else ""
        ),
        f"CPU: {hw['cpu']} ({hw['cores']} cores{_features(hw)})",
        f"GPU: {hw.get('gpu') or 'none'}",
        f"TensorFlow {hw['tensorflow']}, Keras {hw['keras']}, Python {hw['python']}; "
        f"load average before {_fmt_load(hw.get('load_before'))}, "
        f"after {_fmt_load(hw.get('load_after'))}",
    ]
    if cfg["env"]:
        lines.append("environment: " + " ".join(f"{k}={v}" for k, v in cfg["env"].items()))
    if _busy(hw):
        lines.append(
            f"warning: other programs were using the CPU (1-minute load average "
            f"{hw['load_before'][0]:.1f} before, {hw['load_after'][0]:.1f} after, on "
            f"{hw['cores']} cores): wall-clock figures are inflated and noisy; compare CPU s."
        )
    header = (
        f"{'mode':<10} {'what':<40} {'img/s':>8} {'s/step':>7} {'best':>7} {'CPU s':>7} "
        f"{'vs tutorial':>11} {'(CPU s)':>7} {'peak RSS':>9} {'GPU peak':>9}"
    )
    lines += ["", header, "-" * len(header)]
    for result in report["results"]:
        mode = result["mode"]
        if "error" in result:
            lines.append(f"{mode:<10} FAILED: {result['error'].splitlines()[-1][:90]}")
            continue
        ratio, cpu_ratio = result.get("ratio"), result.get("cpu_ratio")
        lines.append(
            f"{mode:<10} {result['description'][:40]:<40} "
            f"{_fmt(result.get('images_per_s'), 8, 2)} {_fmt(result.get('s_per_step'), 7, 3)} "
            f"{_fmt(result.get('best_s_per_step'), 7, 3)} "
            f"{_fmt(result.get('cpu_s_per_step'), 7, 3)} "
            f"{(f'{ratio:.2f}x' if ratio is not None else '-'):>11} "
            f"{(f'{cpu_ratio:.2f}x' if cpu_ratio is not None else '-'):>7} "
            f"{_fmt_mb(result.get('peak_rss_mb')):>9} {_fmt_mb(result.get('gpu_peak_mb')):>9}"
        )
    lines.append(
        "img/s, s/step: median step; best: fastest step; CPU s: CPU seconds per step, all "
        "threads (steadier than wall time on a shared machine);\nvs tutorial: img/s ratio "
        "(> 1: faster than the tutorial's loop), and the same ratio in CPU seconds."
    )
    notes = [_notes(result) for result in report["results"]]
    notes = [note for note in notes if note]
    if notes:
        lines += [""] + notes
    quality = report.get("quality")
    if quality:
        lines += [
            "",
            f"quality: validation L1 after {quality['steps']} steps at "
            f"{quality['image_size']}x{quality['image_size']} (same seed and data)",
        ]
        for run in quality["runs"]:
            if "error" in run:
                lines.append(f"  {run['policy']:<15} FAILED: {run['error'].splitlines()[-1][:90]}")
            else:
                lines.append(
                    f"  {run['policy']:<15} val L1 {run['val_l1']:.4f} (untrained "
                    f"{run['val_l1_untrained']:.4f}), {run['images_per_s']:.1f} img/s"
                )
    return "\n".join(lines)


def _features(hw):
    return f", {hw['cpu_features']}" if hw["cpu_features"] else ""


def hardware_info():
    """CPU model and features, core count, versions (the workers add the GPU)."""
    from p2p_keras.precision import cpu_info

    cpu, flags = cpu_info()
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    info = {
        "cpu": cpu,
        "cpu_features": " ".join(flag for flag in wanted if flag in flags),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "gpu": None,
    }
    for package in ("tensorflow", "keras"):
        try:
            from importlib.metadata import version

            info[package] = version(package)
        except Exception:  # noqa: BLE001 - a version string is only informative
            info[package] = "?"
    return info


def bench_command(argv=None):
    """``python -m p2p_keras bench [options]``; returns the exit status (1 if a mode failed)."""
    parser = argparse.ArgumentParser(
        prog="python -m p2p_keras bench",
        description="Time the TF tutorial's loop against Pix2Pix.fit, mixed precision, XLA and "
        "the input pipeline; each mode in its own process.",
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def add_arguments(parser):
    """Adds the bench options to an `argparse` parser (for a ``bench`` sub-command)."""
    parser.add_argument("--image-size", type=int, default=256, help="image side (default 256)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per step (default 1)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps (default 3)")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=list(MODES),
        default=list(DEFAULT_MODES),
        metavar="MODE",
        help=f"subset of {', '.join(MODES)} (default: all but breakdown)",
    )
    parser.add_argument("--data", help="dataset folder or name (default: synthetic facades)")
    parser.add_argument("--data-dir", default="data", help="where datasets live (default data)")
    parser.add_argument("--filters", type=int, default=64, help="network width (default 64)")
    parser.add_argument(
        "--norm", choices=("batch", "sync_batch", "instance", "none"), default="batch"
    )
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument(
        "--mixed-policy",
        choices=("mixed_bfloat16", "mixed_float16"),
        help="policy of the mixed mode (default: float16 on GPU, bfloat16 on CPU)",
    )
    parser.add_argument(
        "--quality",
        type=int,
        default=0,
        metavar="N",
        help="also train N steps in float32 and mixed precision and compare validation L1",
    )
    parser.add_argument("--quality-size", type=int, default=64, help="image side for --quality")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment variable for the workers, e.g. TF_ENABLE_ONEDNN_OPTS=0 (repeatable)",
    )
    parser.add_argument("--json", dest="json_path", help="also write the results to this file")
    parser.add_argument("--timeout", type=float, help="seconds allowed per mode")
    return parser


def run_from_args(args):
    """Runs `run_benchmark` with parsed `add_arguments` options, prints the table."""
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--env takes KEY=VALUE, got {item!r}")
        env[key] = value
    report = run_benchmark(
        args.image_size,
        args.batch_size,
        steps=args.steps,
        warmup=args.warmup,
        modes=args.modes,
        data=args.data,
        data_dir=args.data_dir,
        filters=args.filters,
        norm=None if args.norm == "none" else args.norm,
        steps_per_execution=args.steps_per_execution,
        mixed_policy=args.mixed_policy,
        quality=args.quality,
        quality_size=args.quality_size,
        env=env,
        json_path=args.json_path,
        timeout=args.timeout,
    )
    print()
    print(format_table(report))
    if args.json_path:
        print(f"\nWrote {args.json_path}")
    failed = [r for r in report["results"] if "error" in r]
    failed += [r for r in (report["quality"] or {}).get("runs", []) if "error" in r]
    return 1 if failed else 0


def run_worker(mode, config, timeout=None):
    """Runs one mode in a fresh Python process and returns its result dict.

    Args:
        mode: a key of `MODES`, or "quality".
        config: the benchmark settings (see `run_benchmark`), JSON-serialisable.
        timeout: seconds before the process is killed.

    Returns:
        The worker's result; on failure ``{"mode": mode, "error": "..."}`` with the end of the
        worker's output.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **config.get("env", {})}
    with tempfile.TemporaryDirectory(prefix="p2p_bench_") as tmp:
        result_path = pathlib.Path(tmp) / "result.json"
        command = [
            sys.executable,
            "-m",
            "p2p_keras.jobs.bench",
            _RESULT_FLAG,
            mode,
            json.dumps(config),
            str(result_path),
        ]
        try:
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return {
                "mode": mode,
                "description": MODES.get(mode, mode),
                "error": f"timed out after {timeout} s",
            }
        if done.returncode == 0 and result_path.exists():
            return json.loads(result_path.read_text())
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        return {
            "mode": mode,
            "description": MODES.get(mode, mode),
            "error": f"worker exited with {done.returncode}:\n{tail}",
        }


# --------------------------------------------------------------------------- parent helpers


def _quality(config, steps, size, timeout, verbose):
    runs = []
    for policy in ("float32", "mixed"):
        cfg = {**config, "quality_steps": int(steps), "image_size": int(size), "policy": policy}
        if verbose:
            print(f"[bench] quality: {steps} steps at {size}x{size}, {policy} ...", flush=True)
        run = run_worker("quality", cfg, timeout=timeout)
        run.setdefault("policy", policy)
        runs.append(run)
        if verbose:
            print(f"[bench] quality {run['policy']}: {_short(run)}", flush=True)
    return {"steps": int(steps), "image_size": int(size), "runs": runs}


def _add_ratios(results):
    reference = next((r for r in results if r["mode"] == REFERENCE and r.get("images_per_s")), None)
    for result in results:
        if reference is not None and result.get("images_per_s"):
            result["ratio"] = result["images_per_s"] / reference["images_per_s"]
        else:
            result["ratio"] = None
        if (
            reference is not None
            and result.get("cpu_s_per_step")
            and reference.get("cpu_s_per_step")
        ):
            result["cpu_ratio"] = reference["cpu_s_per_step"] / result["cpu_s_per_step"]
    training = [r for r in results if r.get("kind") == "train" and r.get("images_per_s")]
    for result in results:
        if result["mode"] == "pipeline" and result.get("images_per_s") and training:
            fastest = max(r["images_per_s"] for r in training)
            result["vs_fastest_training"] = result["images_per_s"] / fastest
            if result.get("cold_images_per_s"):
                result["cold_vs_fastest_training"] = result["cold_images_per_s"] / fastest


def _short(result):
    if "error" in result:
        return "FAILED: " + result["error"].splitlines()[-1][:120]
    if "val_l1" in result:
        return f"val L1 {result['val_l1']:.4f}"
    if result.get("images_per_s"):
        return f"{result['images_per_s']:.2f} img/s, {result['s_per_step']:.3f} s/step"
    return "done"


def _notes(result):
    mode = result["mode"]
    if "error" in result:
        return ""
    if mode == "mixed":
        return (
            f"mixed: policy {result.get('policy')}, jit_compile resolved to "
            f"{result.get('jit_compile')}, optimizer {result.get('optimizer')}"
        )
    if mode == "fit":
        return f'fit: jit_compile="auto" resolved to {result.get("jit_compile")}'
    if mode == "pipeline":
        text = (
            f"pipeline: {result['files']} JPEGs in {result['data']}; cached epochs "
            f"{result['images_per_s']:.1f} img/s, first (decoding) epoch "
            f"{result['cold_images_per_s']:.1f} img/s"
        )
        if result.get("vs_fastest_training"):
            text += (
                f"; {result['vs_fastest_training']:.0f}x (cached) and "
                f"{result['cold_vs_fastest_training']:.0f}x (decoding) the fastest training mode"
            )
        return text
    if mode == "breakdown":
        parts = result.get("parts", {})
        width = max(len(name) for name in parts) if parts else 0
        rows = [f"breakdown (median s per call, {result.get('policy')}):"]
        rows += [f"  {name:<{width}} {seconds:8.3f}" for name, seconds in parts.items()]
        return "\n".join(rows)
    return ""


def _busy(hw):
    """Whether the load average says other programs competed for the cores.

    Before the run only this process is alive; after it, the benchmark's own threads count too.
    """
    before, after, cores = hw.get("load_before"), hw.get("load_after"), hw.get("cores")
    if not (before and after and cores):
        return False
    return before[0] > 0.5 * cores or after[0] > 1.25 * cores


def _fmt(value, width, digits):
    return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"


def _fmt_mb(mb):
    if mb is None:
        return "-"
    return f"{mb / 1024:.2f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def _fmt_load(load):
    return "?" if not load else "/".join(f"{value:.2f}" for value in load)


def _load_average():
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


# --------------------------------------------------------------------------- worker side
# Everything below runs in the worker process; TensorFlow is imported only here.


def _worker_main(mode, config, result_path):
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:  # peak memory then reflects what the mode needs, not a greedy pool
        tf.config.experimental.set_memory_growth(gpu, True)
    started = time.perf_counter()
    if mode == "tutorial":
        result = _run_tutorial(config)
    elif mode in ("fit", "mixed", "xla", "no_xla"):
        result = _run_fit(mode, config, gpus)
    elif mode == "pipeline":
        result = _run_pipeline(config)
    elif mode == "breakdown":
        result = _run_breakdown(config)
    elif mode == "quality":
        result = _run_quality(config, gpus)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    result.update(mode=mode, description=MODES.get(mode, mode))
    result["worker_s"] = round(time.perf_counter() - started, 1)
    result["peak_rss_mb"] = _peak_rss_mb()
    if gpus:
        result["gpu_name"] = tf.config.experimental.get_device_details(gpus[0]).get(
            "device_name", "GPU"
        )
        result["gpu_peak_mb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    else:
        result["gpu_peak_mb"] = None
    pathlib.Path(result_path).write_text(json.dumps(result))


def _peak_rss_mb():
    import resource

    # Linux reports kilobytes, macOS bytes.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 1024)


def _mixed_policy(config, gpus):
    return config.get("mixed_policy") or ("mixed_float16" if gpus else "mixed_bfloat16")


def _networks(config):
    from p2p_keras.discriminator import build_patchgan_discriminator
    from p2p_keras.generator import build_unet_generator

    size = config["image_size"]
    shape = (size, size, 3)
    generator = build_unet_generator(shape, 3, filters=config["filters"], norm=config["norm"])
    discriminator = build_patchgan_discriminator(
        shape, 3, filters=config["filters"], norm=config["norm"]
    )
    return generator, discriminator


def _random_batch(config, seed=0):
    import tensorflow as tf

    size, batch = config["image_size"], config["batch_size"]
    generator = tf.random.Generator.from_seed(seed)
    x = generator.uniform((batch, size, size, 3), -1.0, 1.0)
    y = generator.uniform((batch, size, size, 3), -1.0, 1.0)
    return x, y


def _summary(times, batch_size, cpu_times=None):
    median = statistics.median(times)
    result = {
        "kind": "train",
        "s_per_step": median,
        "images_per_s": batch_size / median,
        "best_s_per_step": min(times),
        "step_times": [round(t, 5) for t in times],
    }
    if cpu_times:
        # CPU seconds of all the process's threads: less sensitive than wall time to other
        # programs sharing the cores (it still grows a little with their cache contention).
        result["cpu_s_per_step"] = statistics.median(cpu_times)
    return result


def _run_tutorial(config):
    """The TF pix2pix tutorial's train_step (tensorflow.org/tutorials/generative/pix2pix)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    generator, discriminator = _networks(config)
    loss_object = keras.losses.BinaryCrossentropy(from_logits=True)
    lam = 100.0

    def generator_loss(disc_generated_output, gen_output, target):
        gan_loss = loss_object(tf.ones_like(disc_generated_output), disc_generated_output)
        l1 = tf.reduce_mean(tf.abs(target - gen_output))
        return gan_loss + lam * l1, gan_loss, l1

    def discriminator_loss(disc_real_output, disc_generated_output):
        real_loss = loss_object(tf.ones_like(disc_real_output), disc_real_output)
        generated_loss = loss_object(tf.zeros_like(disc_generated_output), disc_generated_output)
        return real_loss + generated_loss

    generator_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)
    discriminator_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)

    @tf.function
    def train_step(input_image, target):
        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            gen_output = generator(input_image, training=True)
            disc_real_output = discriminator([input_image, target], training=True)
            disc_generated_output = discriminator([input_image, gen_output], training=True)
            gen_total_loss, _, _ = generator_loss(disc_generated_output, gen_output, target)
            disc_loss = discriminator_loss(disc_real_output, disc_generated_output)
        generator_gradients = gen_tape.gradient(gen_total_loss, generator.trainable_variables)
        discriminator_gradients = disc_tape.gradient(disc_loss, discriminator.trainable_variables)
        generator_optimizer.apply_gradients(
            zip(generator_gradients, generator.trainable_variables, strict=True)
        )
        discriminator_optimizer.apply_gradients(
            zip(discriminator_gradients, discriminator.trainable_variables, strict=True)
        )
        return gen_total_loss, disc_loss

    x, y = _random_batch(config)
    times, cpu_times = [], []
    for step in range(config["warmup"] + config["steps"]):
        start, cpu_start = time.perf_counter(), time.process_time()
        g_loss, d_loss = train_step(x, y)
        float(g_loss)  # waits for the step (GPU work is asynchronous)
        if step >= config["warmup"]:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    result = _summary(times, config["batch_size"], cpu_times)
    result.update(policy="float32", jit_compile=False, final_g_loss=float(g_loss))
    return result


def _step_timer():
    import keras

    class StepTimer(keras.callbacks.Callback):
        """Wall time of each `train_function` call (one step, or steps_per_execution)."""

        def __init__(self):
            super().__init__()
            self.times, self.cpu_times = [], []
            self._start = self._cpu_start = None

        def on_train_batch_begin(self, batch, logs=None):
            self._start, self._cpu_start = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, batch, logs=None):
            if logs:  # reading a value waits for asynchronous (GPU) work
                float(next(iter(logs.values())))
            self.times.append(time.perf_counter() - self._start)
            self.cpu_times.append(time.process_time() - self._cpu_start)

    return StepTimer()


def _run_fit(mode, config, gpus):
    import keras
    import tensorflow as tf

    from p2p_keras.model import Pix2Pix

    policy = "float32"
    if mode == "mixed":
        policy = _mixed_policy(config, gpus)
        keras.mixed_precision.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    generator, discriminator = _networks(config)
    model = Pix2Pix(generator, discriminator)
    jit = {"fit": "auto", "mixed": "auto", "xla": True, "no_xla": False}[mode]
    per_execution = config.get("steps_per_execution", 1)
    model.compile(jit_compile=jit, steps_per_execution=per_execution)
    x, y = _random_batch(config)
    dataset = tf.data.Dataset.from_tensors((x, y)).repeat()
    warm = -(-config["warmup"] // per_execution)  # executions, rounded up
    timed = -(-config["steps"] // per_execution)
    timer = _step_timer()
    history = model.fit(
        dataset,
        epochs=1,
        steps_per_epoch=(warm + timed) * per_execution,
        callbacks=[timer],
        verbose=0,
    )
    times = [t / per_execution for t in timer.times[warm:]]
    cpu_times = [t / per_execution for t in timer.cpu_times[warm:]]
    result = _summary(times, config["batch_size"], cpu_times)
    result.update(
        policy=policy,
        jit_compile=bool(model.jit_compile),
        steps_per_execution=per_execution,
        optimizer=type(model.generator_optimizer).__name__,
        final_g_loss=float(history.history["g_loss"][-1]),
        output_dtype=str(model.generator.output.dtype),
    )
    return result


def _resolve_data(config):
    from p2p_keras.jobs.train import resolve_data

    root, direction = resolve_data(config.get("data"), config.get("data_dir", "data"))
    return pathlib.Path(root), direction or "AtoB"


def _run_pipeline(config):
    from p2p_keras.data import load_paired
    from p2p_keras.jobs.train import default_load_size

    root, direction = _resolve_data(config)
    size, batch = config["image_size"], config["batch_size"]
    dataset = load_paired(
        root,
        "train",
        direction=direction,
        image_size=size,
        load_size=default_load_size(size),
        training=True,
        batch_size=batch,
        seed=0,
    )
    batches = int(dataset.cardinality())
    # First epoch: reads, decodes and resizes every file (then cached in memory).
    start = time.perf_counter()
    count = sum(1 for _ in dataset)
    cold = time.perf_counter() - start
    # Cached epochs: shuffle, jitter, convert, batch. At least 2 epochs and 100 batches.
    epochs = max(2, -(-100 // max(count, 1)))
    start = time.perf_counter()
    warm_count = 0
    for _ in range(epochs):
        for _ in dataset:
            warm_count += 1
    warm = time.perf_counter() - start
    files = sum(1 for _ in (root / "train").iterdir()) if (root / "train").is_dir() else batches
    return {
        "kind": "pipeline",
        "images_per_s": warm_count * batch / warm,
        "s_per_step": warm / warm_count,
        "cold_images_per_s": count * batch / cold,
        "cold_s_per_step": cold / count,
        "batches_per_epoch": count,
        "files": files,
        "data": str(root),
    }


def _median_call(function, repeats, warmup=2):
    times = []
    for index in range(warmup + repeats):
        start = time.perf_counter()
        out = function()
        float(out)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _run_breakdown(config):
    """Times the pieces of a training step separately (each in its own tf.function)."""
    import keras
    import tensorflow as tf

    from p2p_keras.losses import generator_gan_loss, l1_loss
    from p2p_keras.model import Pix2Pix

    keras.utils.set_random_seed(0)
    generator, discriminator = _networks(config)
    model = Pix2Pix(generator, discriminator)
    model.compile(jit_compile=False)
    x, y = _random_batch(config)
    g_vars = generator.trainable_variables
    d_vars = discriminator.trainable_variables

    def checksum(tensors):
        return tf.add_n([tf.reduce_sum(tf.cast(t, tf.float32)) for t in tensors])

    @tf.function
    def g_forward():
        return tf.reduce_sum(generator(x, training=True))

    @tf.function
    def g_forward_backward():
        with tf.GradientTape() as tape:
            loss = l1_loss(y, generator(x, training=True))
        return checksum(tape.gradient(loss, g_vars))

    @tf.function
    def d_forward():
        return tf.reduce_sum(discriminator([x, y], training=True))

    @tf.function
    def d_forward_backward_weights():
        with tf.GradientTape() as tape:
            loss = generator_gan_loss(discriminator([x, y], training=True))
        return checksum(tape.gradient(loss, d_vars))

    @tf.function
    def d_forward_backward_input():
        with tf.GradientTape() as tape:
            tape.watch(y)
            loss = generator_gan_loss(discriminator([x, y], training=True))
        return checksum([tape.gradient(loss, y)])

    g_grads = [tf.zeros_like(v) for v in g_vars]
    d_grads = [tf.zeros_like(v) for v in d_vars]

    @tf.function
    def adam_g():
        model.generator_optimizer.apply(g_grads, g_vars)
        return tf.constant(0.0)

    @tf.function
    def adam_d():
        model.discriminator_optimizer.apply(d_grads, d_vars)
        return tf.constant(0.0)

    keras_adam_g = keras.optimizers.Adam(2e-4, beta_1=0.5)
    keras_adam_d = keras.optimizers.Adam(2e-4, beta_1=0.5)

    @tf.function
    def keras_adam():
        keras_adam_g.apply(g_grads, g_vars)
        keras_adam_d.apply(d_grads, d_vars)
        return tf.constant(0.0)

    @tf.function
    def pix2pix_step():
        return model.train_step((x, y))["g_loss"]

    repeats = max(3, config["steps"])
    parts = {
        "G forward": g_forward,
        "G forward+backward": g_forward_backward,
        "D forward (1 pair)": d_forward,
        "D forward+backward, weights": d_forward_backward_weights,
        "D forward+backward, input": d_forward_backward_input,
        "Adam update G (54M), fused": adam_g,
        "Adam update D, fused": adam_d,
        "Adam update G+D, Keras' Adam": keras_adam,
        "Pix2Pix.train_step": pix2pix_step,
    }
    timings = {name: _median_call(fn, repeats) for name, fn in parts.items()}
    # What a step costs, assembled from the parts.
    g_fb, d_f = timings["G forward+backward"], timings["D forward (1 pair)"]
    d_w, d_i = timings["D forward+backward, weights"], timings["D forward+backward, input"]
    fused_adam = timings["Adam update G (54M), fused"] + timings["Adam update D, fused"]
    # tutorial: G, D on 2 pairs, D's weight gradients for both, D's input gradient for the
    # fake pair, Keras' Adam. Pix2Pix.train_step: one more D forward (D is updated first),
    # the fused Adam.
    timings["sum of parts: tutorial step"] = (
        g_fb + 2 * d_w + d_i - d_f + timings["Adam update G+D, Keras' Adam"]
    )
    timings["sum of parts: Pix2Pix step"] = g_fb + 2 * d_w + d_i + fused_adam
    timings = {name: round(value, 4) for name, value in timings.items()}
    step = timings["Pix2Pix.train_step"]
    return {
        "kind": "profile",
        "parts": timings,
        "s_per_step": step,
        "images_per_s": config["batch_size"] / step,
        "policy": "float32",
    }


def _run_quality(config, gpus):
    import keras

    from p2p_keras.data import load_paired
    from p2p_keras.model import Pix2Pix

    policy = "float32"
    if config["policy"] == "mixed":
        policy = _mixed_policy(config, gpus)
        keras.mixed_precision.set_dtype_policy(policy)
    root, direction = _resolve_data(config)
    size, batch = config["image_size"], config["batch_size"]
    common = {"direction": direction, "image_size": size, "batch_size": batch}
    train_ds = load_paired(root, "train", load_size=round(size * 286 / 256), seed=0, **common)
    val_split = "val" if (root / "val").is_dir() else "test"
    val_ds = load_paired(root, val_split, training=False, **common)
    keras.utils.set_random_seed(0)
    generator, discriminator = _networks(config)
    model = Pix2Pix(generator, discriminator)
    model.compile()
    untrained = model.evaluate(val_ds, return_dict=True, verbose=0)["g_l1"]
    steps = config["quality_steps"]
    start = time.perf_counter()
    model.fit(train_ds.repeat(), epochs=1, steps_per_epoch=steps, verbose=0)
    elapsed = time.perf_counter() - start
    trained = model.evaluate(val_ds, return_dict=True, verbose=0)
    return {
        "kind": "quality",
        "policy": policy,
        "val_l1": float(trained["g_l1"]),
        "val_l1_untrained": float(untrained),
        "val_d_loss": float(trained["d_loss"]),
        "images_per_s": steps * batch / elapsed,
        "steps": steps,
    }


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == _RESULT_FLAG:
        _worker_main(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4])
    else:
        raise SystemExit(bench_command(sys.argv[1:]))
