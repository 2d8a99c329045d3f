"""Training speed of each of `MODES` (``tutorial``: the TF pix2pix tutorial's ``train_step``, the
reference; ``pipeline``: `load_paired` alone), and of ``fit`` on other Keras backends, each in its
own process on one random batch: medians of wall-clock and CPU seconds."""

import dataclasses
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

from p2p_keras.jobs.options import TrainOptions
from p2p_keras.jobs.options import add_arguments as add_train_arguments

MODES = ("tutorial", "fit", "mixed", "xla", "no_xla", "pipeline")
BACKENDS = ("tensorflow", "jax", "torch")
OPTIONS = ("data", "data_dir", "image_size", "batch_size", "filters", "norm")


def add_arguments(parser):
    """Adds the bench options to an `argparse` parser (the ``bench`` sub-command)."""
    add_train_arguments(parser, only=OPTIONS)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=MODES)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=(), help="time fit")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps (default 3)")
    parser.add_argument("--json", dest="json_path", help="also write the results to this file")
    return parser


def run_from_args(args):
    """Runs `run_benchmark` with parsed `add_arguments` options; prints the table."""
    options = TrainOptions.from_args(args)
    report = run_benchmark(options, args.modes, args.backends, steps=args.steps, warmup=args.warmup)
    print("\n" + format_table(report))
    if args.json_path:
        from p2p_keras.data import atomic_path

        with atomic_path(args.json_path) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any("error" in result for result in report["results"]) else 0


def run_benchmark(options=None, modes=MODES, backends=(), *, steps=10, warmup=3):
    """Times `modes`, then ``fit`` on `backends`, each in a worker process. Returns ``{"config",
    "hardware", "results", "notes"}``; a result has its timings and their "ratio" and "cpu_ratio"
    to "tutorial", or an "error" when its worker failed."""
    if unknown := [mode for mode in modes if mode not in MODES]:
        raise ValueError(f"unknown mode(s) {unknown}; choose from {MODES}")
    from p2p_keras.precision import cpu_info

    cpu, flags = cpu_info()
    flags = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags)
    config = {"steps": steps, "warmup": warmup, **dataclasses.asdict(options or TrainOptions())}
    hardware = {"cpu": f"{cpu} ({os.cpu_count()} cores, {flags or 'no AVX2'})"}
    missing = [name for name in backends if importlib.util.find_spec(name) is None]
    notes = [f"backend {name}: not installed (pip install {name})" for name in missing]
    report = {"config": config, "hardware": hardware, "results": [], "notes": notes}
    hardware["load_before"] = os.getloadavg()[0]
    jobs = [(mode, None) for mode in modes] + [("fit", b) for b in backends if b not in missing]
    for mode, backend in jobs:
        print(f"[bench] {mode} {backend or ''}...", flush=True)
        report["results"].append(run_worker({"mode": mode, **config}, backend))
    hardware["load_after"] = os.getloadavg()[0]
    ok = [result for result in report["results"] if "error" not in result]
    reference = next((result for result in ok if result["mode"] == "tutorial"), None)
    for result in ok if reference else ():
        result["ratio"] = result["images_per_s"] / reference["images_per_s"]
        result["cpu_ratio"] = reference["cpu_s_per_step"] / result["cpu_s_per_step"]
    return report


def run_worker(config, backend=None):
    """Runs one mode in a fresh Python process (on `backend`) and returns its result."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if backend:
        env["KERAS_BACKEND"] = backend
    name = config["mode"] + (f"[{backend}]" if backend else "")
    command = [sys.executable, "-m", "p2p_keras.jobs.bench", "--worker", json.dumps(config)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    last = (done.stdout.strip().splitlines() or [""])[-1]
    if done.returncode == 0 and last.startswith("{"):
        return {**json.loads(last), "mode": name}
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-10:])
    return {"mode": name, "error": f"worker exited with {done.returncode}:\n{tail}"}


def format_table(report):
    """The report as text: settings and hardware, one row per mode, then notes."""
    cfg, hw, results = report["config"], report["hardware"], report["results"]
    first = next((result for result in results if "error" not in result), {})
    lines = [
        f"p2p_keras bench: {cfg['image_size']} px, batch {cfg['batch_size']}, filters "
        f"{cfg['filters']}, norm {cfg['norm']}; median of {cfg['steps']} steps after "
        f"{cfg['warmup']} warm-up",
        f"CPU: {hw['cpu']}; GPU: {first.get('gpu') or 'none'}; {first.get('versions', '')}; "
        f"load average {hw['load_before']:.1f} before, {hw['load_after']:.1f} after",
    ]
    if max(hw["load_before"], hw["load_after"] / 1.25) > 0.5 * os.cpu_count():
        lines.append("warning: other programs shared the CPUs: compare the CPU-second ratio")
    header = "mode               img/s  s/step   CPU s vs tutorial  (CPU s)  peak RSS"
    lines += ["", header, "-" * len(header)]
    for r in results:
        if "error" in r:
            lines.append(f"{r['mode']:<16} FAILED: " + r["error"].splitlines()[-1][:90])
            continue
        ratio, cpu_ratio = (f"{r[key]:.2f}x" if key in r else "-" for key in ("ratio", "cpu_ratio"))
        lines.append(
            f"{r['mode']:<16} {r['images_per_s']:7.2f} {r['s_per_step']:7.3f} "
            f"{r['cpu_s_per_step']:7.3f} {ratio:>11} {cpu_ratio:>8} {r['peak_rss_mb']:6.0f} MB"
        )
    notes = [result["note"] for result in results if result.get("note")] + report["notes"]
    return "\n".join(lines + [""] * bool(notes) + notes)


def _worker(config):
    """Worker side: times `config["mode"]` and prints the result as the last line, in JSON."""
    import keras
    import tensorflow as tf

    clock = []  # (wall, CPU) seconds before and after each step

    def tick(*_, **__):  # also a callback: (batch, logs)
        clock.append((time.perf_counter(), time.process_time()))

    options = TrainOptions(**{name: config[name] for name in OPTIONS})
    runner = {"tutorial": _tutorial, "pipeline": _pipeline}.get(config["mode"], _fit)
    result = runner(config, options, tick, config["warmup"] + config["steps"])
    times, cpu_times = np.subtract(clock[1::2], clock[::2])[config["warmup"] :].T.tolist()
    gpus = tf.config.list_physical_devices("GPU")
    result.update(
        images_per_s=options.batch_size / statistics.median(times),
        s_per_step=statistics.median(times),
        cpu_s_per_step=statistics.median(cpu_times),
        step_times=[round(t, 5) for t in times],
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
        backend=keras.config.backend(),
        gpu=tf.config.experimental.get_device_details(gpus[0]).get("device_name") if gpus else None,
        versions=f"TensorFlow {tf.__version__}, Keras {keras.__version__}",
    )
    print(json.dumps(result))


def _setup(options, **build):
    """The networks (seeded) and a random ``(input, target)`` batch."""
    import keras

    from p2p_keras.jobs.train import build_pix2pix

    keras.utils.set_random_seed(0)
    model = build_pix2pix(options.image_size, filters=options.filters, norm=options.norm, **build)
    shape = (2, options.batch_size, *model.generator.input_shape[1:])
    return model, tuple(np.random.default_rng(0).uniform(-1, 1, shape).astype("float32"))


def _tutorial(config, options, tick, steps):
    """The TF pix2pix tutorial's train_step (tensorflow.org/tutorials/generative/pix2pix)."""
    import keras
    import tensorflow as tf

    model, (x, y) = _setup(options)
    generator, discriminator = model.generator, model.discriminator
    loss_object = keras.losses.BinaryCrossentropy(from_logits=True)
    generator_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)
    discriminator_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)

    @tf.function
    def train_step(input_image, target):
        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            gen_output = generator(input_image, training=True)
            disc_real_output = discriminator([input_image, target], training=True)
            disc_gen_output = discriminator([input_image, gen_output], training=True)
            gan_loss = loss_object(tf.ones_like(disc_gen_output), disc_gen_output)
            gen_total_loss = gan_loss + 100 * tf.reduce_mean(tf.abs(target - gen_output))
            real_loss = loss_object(tf.ones_like(disc_real_output), disc_real_output)
            generated_loss = loss_object(tf.zeros_like(disc_gen_output), disc_gen_output)
            disc_loss = real_loss + generated_loss
        g_vars, d_vars = generator.trainable_variables, discriminator.trainable_variables
        generator_gradients = gen_tape.gradient(gen_total_loss, g_vars)
        discriminator_gradients = disc_tape.gradient(disc_loss, d_vars)
        generator_optimizer.apply_gradients(zip(generator_gradients, g_vars, strict=True))
        discriminator_optimizer.apply_gradients(zip(discriminator_gradients, d_vars, strict=True))
        return gen_total_loss

    for _ in range(steps):
        tick()
        float(train_step(x, y))  # float(): waits for the step
        tick()
    return {}


def _fit(config, options, tick, steps):
    import keras
    import tensorflow as tf

    from p2p_keras.optimizers import default_optimizer
    from p2p_keras.precision import has_gpu

    mode = config["mode"]
    precision = ("mixed_float16" if has_gpu() else "mixed_bfloat16") if mode == "mixed" else None
    model, pair = _setup(options, precision=precision)
    jit = {"xla": True, "no_xla": False}.get(mode, options.jit_compile)
    model.compile(default_optimizer(), default_optimizer(), jit_compile=jit)

    def end(batch, logs):
        float(logs["g_loss"])  # waits for asynchronous (GPU) work
        tick()

    timer = keras.callbacks.LambdaCallback(on_train_batch_begin=tick, on_train_batch_end=end)
    data = tf.data.Dataset.from_tensors(pair).repeat()
    model.fit(data, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    return {"jit_compile": bool(model.jit_compile), "precision": precision or "float32"}


def _pipeline(config, options, tick, steps):
    from p2p_keras.data import load_paired
    from p2p_keras.jobs.datasets import resolve_dataset
    from p2p_keras.jobs.train import default_load_size

    root, direction = resolve_dataset(options.data, options.data_dir)
    size, batch_size = options.image_size, options.batch_size
    sizes = {"image_size": size, "load_size": default_load_size(size), "batch_size": batch_size}
    dataset = load_paired(root, "train", direction=direction or "AtoB", seed=0, **sizes)
    start, count = time.perf_counter(), sum(1 for _ in dataset)  # decodes; later epochs: cached
    cold = count * batch_size / (time.perf_counter() - start)
    batches = iter(dataset.repeat())
    for _ in range(steps):
        tick()
        next(batches)
        tick()
    return {"note": f"pipeline: {root}, first (decoding) epoch {cold:.1f} img/s"}


if __name__ == "__main__":
    _worker(json.loads(sys.argv[2]))
