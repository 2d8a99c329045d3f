"""The browser demo: its server (a tiny generator, fast) and the page in headless Chromium."""

import base64
import concurrent.futures
import http.client
import io
import json
import os
import pathlib
import threading
import time

import numpy as np
import pytest
from PIL import Image

from p2p_keras import project_dir
from p2p_keras.generator import build_unet_generator
from p2p_keras.inference import save_model
from p2p_keras.jobs.demo import default_model, make_server

CHROMIUM, CHROMEDRIVER = pathlib.Path("/usr/bin/chromium"), pathlib.Path("/usr/bin/chromedriver")


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def _start(model_path):
    server = make_server(model_path, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "generator.keras"
    save_model(build_unet_generator((128, 128, 3), filters=4), path, {"direction": "BtoA"})
    server = _start(path)
    yield server
    server.shutdown()
    server.server_close()


def _request(server, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def test_page_info_and_examples(server):
    status, kind, page = _request(server, "GET", "/")
    assert status == 200 and kind.startswith("text/html") and b"<canvas" in page
    info = json.loads(_request(server, "GET", "/info")[2])
    assert (info["height"], info["width"], info["channels"]) == (128, 128, 3)
    assert info["direction"] == "BtoA" and info["facades"] and len(info["palette"]) == 12
    for kind in ("test", "synthetic"):
        status, content_type, body = _request(server, "GET", f"/example?kind={kind}")
        assert status == 200 and content_type == "image/png"
        assert np.asarray(Image.open(io.BytesIO(body))).shape == (128, 128, 3)
    assert _request(server, "GET", "/nothing")[0] == 404


def test_translate_answers_at_the_image_size(server):
    image = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    for mode in ("paper", "deterministic"):
        status, kind, body = _request(
            server,
            "POST",
            f"/translate?mode={mode}&seed=3",
            _png(image),
            {"Content-Type": "image/png"},
        )
        assert status == 200 and kind == "image/png"
        result = Image.open(io.BytesIO(body))
        assert result.format == "PNG" and result.size == (300, 200) and result.mode == "RGB"


def test_a_non_image_is_400_and_a_large_body_413(server):
    status, kind, body = _request(server, "POST", "/translate", b"not an image" * 10)
    assert status == 400 and kind.startswith("text/plain") and b"not a usable PNG" in body
    status, _, body = _request(
        server, "POST", "/translate", b"\0" * (11 * 2**20), {"Content-Type": "image/png"}
    )
    assert status == 413 and b"10 MB" in body
    assert (
        _request(server, "POST", "/translate?mode=fast", _png(np.zeros((8, 8, 3), "uint8")))[0]
        == 400
    )
    assert _request(server, "POST", "/translate", b"")[0] == 400


def test_twenty_concurrent_requests_are_all_answered(server):
    images = [_png(np.full((64, 96, 3), 12 * i, np.uint8)) for i in range(20)]
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda png: _request(server, "POST", "/translate", png), images))
    assert [status for status, _, _ in answers] == [200] * 20
    assert {Image.open(io.BytesIO(body)).size for _, _, body in answers} == {(96, 64)}


def _chromium(user_data_dir):
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"{CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)  # both paths given: Selenium Manager stays idle
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                f"--user-data-dir={user_data_dir}", "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    return webdriver.Chrome(options=options, service=service)


def _wait_for_image(driver, count, timeout=60):
    """Waits until the page has shown `count` translations; returns the last one and its ms."""
    deadline = time.monotonic() + timeout
    while int(driver.find_element("id", "output").get_attribute("data-count")) < count:
        assert time.monotonic() < deadline, driver.find_element("id", "status").text
        time.sleep(0.05)
    data_url = driver.execute_script(
        "const img = document.getElementById('output'), c = document.createElement('canvas');"
        "c.width = img.naturalWidth; c.height = img.naturalHeight;"
        "c.getContext('2d').drawImage(img, 0, 0); return c.toDataURL('image/png');"
    )
    image = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))
    latency = float(driver.find_element("id", "output").get_attribute("data-latency-ms"))
    return np.asarray(image.convert("L"), np.float32), latency


def test_drawing_a_window_in_chromium_draws_its_dark_frame(tmp_path):
    model = default_model()  # P2P_PROJECT_DIR can point elsewhere
    if not model.is_file():
        pytest.skip(f"the showcase model {model} is not there yet")
    server = _start(model)
    driver = _chromium(tmp_path / "chromium-profile")
    try:
        from selenium.webdriver.common.action_chains import ActionChains

        driver.get("http://{}:{}/".format(*server.server_address[:2]))
        _wait_for_image(driver, 1)  # the first example's translation
        driver.find_element("css selector", ".swatch[data-name=facade]").click()
        driver.find_element("id", "fill").click()
        wall, _ = _wait_for_image(driver, 2)
        driver.find_element("css selector", ".swatch[data-name=window]").click()
        driver.find_element("id", "tool-rect").click()
        canvas = driver.find_element("id", "canvas")
        size, shown = int(canvas.get_attribute("width")), canvas.size["width"]
        scale = shown / size
        # A window of a real facade's size (20x28 of 128 pixels), corners in model pixels.
        x0, x1, y0, y1 = (int(f * size) for f in (0.42, 0.58, 0.39, 0.61))

        def offset(p):  # model pixel -> CSS offset from the canvas centre (Selenium 4)
            return int((p + 0.5) * scale - shown / 2)

        chain = ActionChains(driver).move_to_element_with_offset(canvas, offset(x0), offset(y0))
        chain.click_and_hold().move_to_element_with_offset(canvas, offset(x1), offset(y1))
        chain.release().perform()
        drawn, latency = _wait_for_image(driver, 3)
        driver.save_screenshot(str(tmp_path / "demo.png"))
        if os.environ.get("P2P_SCREENSHOT") == "1":
            driver.save_screenshot(str(project_dir() / "results" / "demo.png"))
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()
    assert drawn.shape == (size, size)  # the translation comes back at the canvas' size
    # The window is drawn where the stroke was: the rectangle's area gains contrast (the showcase
    # model draws a light frame with a dark outline) that the wall had there before and that the
    # wall around it lacks. (The colours shift everywhere: batch statistics of the new image.)
    near = np.zeros(drawn.shape, bool)
    near[y0 - 2 : y1 + 3, x0 - 2 : x1 + 3] = True
    ring = np.zeros(drawn.shape, bool)  # the wall around the window
    ring[y0 - 14 : y1 + 15, x0 - 14 : x1 + 15] = True
    ring[y0 - 4 : y1 + 5, x0 - 4 : x1 + 5] = False
    window, before, around = drawn[near].std(), wall[near].std(), drawn[ring].std()
    print(
        f"stroke -> image {latency:.0f} ms; contrast at the window {window:.1f} (before "
        f"{before:.1f}), around it {around:.1f}"
    )
    assert np.abs(drawn - wall).mean() > 2.0, "the output did not change after the stroke"
    assert window > 1.5 * before and window > 1.5 * around, "no window where it was drawn"


def test_the_demo_command_line():
    from p2p_keras.jobs.cli import _demo, build_parser

    args = build_parser().parse_args(["demo", "--port", "0"])
    assert (args.run, args.model, args.host, args.port) == (_demo, None, "127.0.0.1", 0)
