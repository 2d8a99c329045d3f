"""A browser demo after affinelayer's pix2pix-tensorflow: draw a label map, see its translation.

One offline page, `demo.html`, served with one shared generator by a standard-library server:
``python -m p2p_keras demo --model results/facades_128/generator.keras --port 8000``
"""

import http.server
import io
import json
import pathlib
import random
import sys
import threading
import time
import urllib.parse

import numpy as np
from PIL import Image, UnidentifiedImageError

from p2p_keras import project_dir
from p2p_keras.data import read_rgb, split_pair
from p2p_keras.inference import load_generator, model_info, translate
from p2p_keras.jobs.synthetic import CMP_PALETTE, render_pair

MAX_BYTES = 10 * 2**20  # a larger request body is answered 413 without being read into memory
MAX_PIXELS = 2**24
PAGE = pathlib.Path(__file__).with_name("demo.html")
MODES = {  # the test-time modes of `p2p_keras.inference.generate`
    "paper": {"dropout": True, "batch_stats": True},
    "deterministic": {"dropout": False, "batch_stats": False},
}


def default_model():
    """The showcase generator: CMP facades label map -> photo at 128x128 (BtoA)."""
    return project_dir() / "results" / "facades_128" / "generator.keras"


def to_png(image):
    """The PNG bytes of a uint8 (H, W, C) array."""
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, "PNG")
    return buffer.getvalue()


def example_label(kind, height, width):
    """A facade label map for the example buttons, resized by nearest pixel, and its source.

    `kind`: "test" (one of `data/facades`' test split, if there, else synthetic) or "synthetic".
    """
    files = sorted((project_dir() / "data" / "facades" / "test").glob("*.jpg"))
    if kind == "test" and files:
        path = random.choice(files)
        label, source = split_pair(read_rgb(path))[1], f"test/{path.name}"  # photo | label map
    else:
        seed = random.randrange(2**31)
        label, source = render_pair(seed, size=max(height, width, 32))[1], f"synthetic, seed {seed}"
    return np.asarray(Image.fromarray(label).resize((width, height), Image.NEAREST)), source


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # `_reply` logs one line per request instead
        pass

    def _reply(self, status, body, content_type="text/plain; charset=utf-8", headers=()):
        body = (body + "\n").encode() if isinstance(body, str) else body
        self.send_response(status)
        for key, value in [("Content-Type", content_type), ("Content-Length", len(body)),
                           ("Cache-Control", "no-store"), *headers]:  # fmt: skip
            self.send_header(key, str(value))
        self.end_headers()
        self.wfile.write(body)
        ms = (time.perf_counter() - self.started) * 1000
        print(f"{self.command} {self.path} {status} {ms:.0f} ms", file=sys.stderr, flush=True)

    def _parse(self):
        self.started = time.perf_counter()
        url = urllib.parse.urlsplit(self.path)
        return url.path, dict(urllib.parse.parse_qsl(url.query))

    def do_GET(self):
        path, query = self._parse()
        info = self.server.info
        if path == "/":
            self._reply(200, PAGE.read_bytes(), "text/html; charset=utf-8")
        elif path == "/info":
            self._reply(200, json.dumps(info).encode(), "application/json")
        elif path == "/example":
            label, source = example_label(query.get("kind"), info["height"], info["width"])
            self._reply(200, to_png(label), "image/png", [("X-Example", source)])
        else:
            self._reply(404, "not found")

    def do_POST(self):
        path, query = self._parse()
        if path != "/translate":
            return self._reply(404, "not found")
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            return self._reply(411, "a Content-Length header is required")
        if int(length) > MAX_BYTES:
            self._reply(413, f"the image is larger than {MAX_BYTES // 2**20} MB")
            return self._discard(int(length))
        mode, seed = query.get("mode", "paper"), query.get("seed", "")
        if mode not in MODES or not (seed == "" or seed.isdigit()):
            return self._reply(400, "mode must be paper or deterministic, seed a natural number")
        try:
            image = Image.open(io.BytesIO(self.rfile.read(int(length))), formats=["PNG", "JPEG"])
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(f"{image.width}x{image.height} pixels is too many")
            image = np.asarray(image.convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            detail = "" if isinstance(error, UnidentifiedImageError) else f" ({error})"
            return self._reply(400, f"the body is not a usable PNG or JPEG image{detail}")
        seed = int(seed) if seed else None  # None: a fresh draw of the dropout noise
        with self.server.lock:  # one shared model; Keras models are not known to be thread-safe
            result = translate(self.server.generator, image, **MODES[mode], seed=seed)
        self._reply(200, to_png(result), "image/png")

    def _discard(self, length):  # drop (a bounded part of) the body: the client sees the 413
        self.connection.settimeout(5)
        try:
            while 0 < length <= 4 * MAX_BYTES and (chunk := self.rfile.read(min(length, 2**16))):
                length -= len(chunk)
        except OSError:
            pass


def make_server(model_path=None, host="127.0.0.1", port=8000):
    """Loads a generator (default `default_model()`) and returns the demo's server, not serving.

    Example:
    >>> server = make_server("generator.keras", port=0)  # 0: a free port, see server_address
    >>> threading.Thread(target=server.serve_forever, daemon=True).start()
    """
    path = pathlib.Path(model_path or default_model())
    generator = load_generator(path)
    _, height, width, channels = generator.input_shape
    direction = model_info(path).get("direction") or ""
    facades = channels == 3 and (direction == "BtoA" or path.resolve() == default_model().resolve())
    translate(generator, np.zeros((height, width, channels), np.uint8))  # the slow first call
    server = http.server.ThreadingHTTPServer((host, port), _Handler)
    server.generator, server.lock = generator, threading.Lock()
    palette = [{"name": name, "rgb": rgb} for name, rgb in CMP_PALETTE] if facades else None
    server.info = {"model": f"{path.parent.name}/{path.name}", "height": height, "width": width,
                   "channels": channels, "direction": direction, "facades": facades,
                   "palette": palette}  # fmt: skip
    return server


def serve(model_path=None, host="127.0.0.1", port=8000):
    """Runs the demo until Ctrl+C: `make_server(model_path, host, port).serve_forever()`."""
    server = make_server(model_path, host, port)
    host, port = server.server_address[:2]
    print(f"pix2pix demo of {server.info['model']}: http://{host}:{port}/ (Ctrl+C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
