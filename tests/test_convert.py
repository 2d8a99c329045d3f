"""`convert_official` against a PyTorch reference of the official pix2pix `UnetGenerator`.

The reference below is written from the official generator's documented structure
(`../shared/notes/official-weights.md`): nested skip blocks whose nn.Sequential holds
``[LeakyReLU(in place), Conv, Norm, submodule, ReLU(in place), ConvT, Norm, Dropout]`` and whose
forward returns ``cat([x, block(x)])``. In-place activations included, since they decide what
the skip carries. It gets random weights and running statistics, is saved with
``torch.save(state_dict())`` and converted; both then translate the same random images.
"""

import copy
import functools
import http.server
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="pip install -r requirements-backends.txt")
nn = torch.nn


class Block(nn.Module):
    def __init__(self, outer, inner, in_channels=None, sub=None, where="middle", norm=None):
        super().__init__()
        bias = norm is not nn.BatchNorm2d
        norm_layer = functools.partial(norm, affine=False) if bias else norm
        in_channels = in_channels or outer
        self.outermost = where == "outer"
        down = nn.Conv2d(in_channels, inner, 4, 2, 1, bias=bias)
        if where == "outer":
            layers = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1)]
            layers.append(nn.Tanh())
        elif where == "inner":
            up = nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, norm_layer(outer)]
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, norm_layer(inner), sub, nn.ReLU(True), up]
            layers += [norm_layer(outer)] + ([nn.Dropout(0.5)] if where == "dropout" else [])
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class OfficialUnet(nn.Module):
    def __init__(self, channels, out_channels, depth, ngf, norm):
        super().__init__()
        block = Block(ngf * 8, ngf * 8, where="inner", norm=norm)
        for _ in range(depth - 5):
            block = Block(ngf * 8, ngf * 8, sub=block, where="dropout", norm=norm)
        for mult in (4, 2, 1):
            block = Block(ngf * mult, ngf * mult * 2, sub=block, norm=norm)
        self.model = Block(out_channels, ngf, channels, block, where="outer", norm=norm)

    def forward(self, x):
        return self.model(x)


def reference(depth, ngf, norm, seed=0):
    torch.manual_seed(seed)
    net = OfficialUnet(3, 3, depth, ngf, norm)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                module.weight.normal_(0, 0.05)
                if module.bias is not None:
                    module.bias.uniform_(-0.1, 0.1)
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.momentum = None  # running statistics: the average over the batches below
        net.train()
        for _ in range(3):  # statistics of other images than the compared ones
            net(torch.rand(2, 3, 2**depth, 2**depth) * 2 - 1)
    return net


def compare(net, generator, images):
    """max |Keras - PyTorch| in eval mode and with batch statistics, dropout off in both."""
    from p2p_keras.inference import generate

    x = torch.from_numpy(images.transpose(0, 3, 1, 2))
    deltas = []
    for batch_stats in (False, True):
        net = copy.deepcopy(net)  # a train-mode pass updates the running statistics
        net.train(batch_stats)
        for module in net.modules():
            if isinstance(module, nn.Dropout):
                module.eval()
        with torch.no_grad():
            expected = net(x).numpy().transpose(0, 2, 3, 1)
        got = generate(generator, images, dropout=False, batch_stats=batch_stats)
        deltas.append(float(np.abs(got - expected).max()))
    return deltas


def images(size, n=2):
    return np.random.default_rng(1).uniform(-1, 1, (n, size, size, 3)).astype("float32")


@pytest.mark.parametrize(
    ("depth", "ngf", "norm", "keys"),
    [(8, 64, nn.BatchNorm2d, (69, 82)), (7, 32, nn.InstanceNorm2d, (28, 28))],
    ids=["unet_256-ngf64-batch", "unet_128-ngf32-instance"],
)
def test_converted_official_generator_computes_the_same_function(tmp_path, depth, ngf, norm, keys):
    from p2p_keras.inference import load_generator, model_info
    from p2p_keras.jobs.convert import convert_official

    net = reference(depth, ngf, norm)
    state = net.state_dict()
    assert len(state) == keys[1]
    without_counts = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(without_counts) == keys[0]
    for name, saved in (("with_counts", state), ("without_counts", without_counts)):
        torch.save(saved, tmp_path / f"{name}.pth")
        out = tmp_path / f"{name}.keras"
        generator = convert_official(tmp_path / f"{name}.pth", out, direction="BtoA")
        assert max(compare(net, generator, images(2**depth))) <= 1e-4
    loaded = load_generator(out)
    assert loaded.input_shape == (None, 2**depth, 2**depth, 3)
    assert model_info(out)["direction"] == "BtoA"
    assert max(compare(net, loaded, images(2**depth))) <= 1e-4
    if norm is nn.BatchNorm2d:
        assert loaded.count_params() == 54_423_811


def test_a_state_dict_with_a_wrong_key_is_refused_naming_the_key_and_file(tmp_path):
    from p2p_keras.jobs.convert import convert_official

    state = reference(7, 8, nn.BatchNorm2d).state_dict()
    torch.save({**state, "model.extra.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"extra\.pth.*unexpected key 'model\.extra\.weight'"):
        convert_official(tmp_path / "extra.pth")
    del state["model.model.1.model.2.running_var"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing\.pth.*missing key 'model\.model\.1\.model\.2"):
        convert_official(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pth: not a PyTorch state dict"):
        convert_official(tmp_path / "junk.pth")


def test_an_official_name_downloads_from_its_address_into_the_keras_cache(tmp_path, monkeypatch):
    """The download route, against a server on 127.0.0.1 that serves a unet_128 state dict."""
    from p2p_keras.inference import model_info
    from p2p_keras.jobs.convert import convert_official

    net = reference(7, 8, nn.BatchNorm2d)
    served = tmp_path / "served"
    served.mkdir()
    torch.save(net.state_dict(), served / "facades_label2photo.pth")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=served)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/{{}}.pth"
    monkeypatch.setattr("p2p_keras.jobs.convert.OFFICIAL_URL", url)
    try:
        generator = convert_official(
            "facades_label2photo", tmp_path / "f.keras", cache_dir=tmp_path / "cache"
        )
    finally:
        server.shutdown()
    assert (tmp_path / "cache" / "models" / "pix2pix_facades_label2photo.pth").is_file()
    assert model_info(tmp_path / "f.keras")["direction"] == "BtoA"
    assert max(compare(net, generator, images(128))) <= 1e-4


def test_convert_official_command_writes_a_generator_that_translate_reads(tmp_path, capsys):
    from p2p_keras.jobs.cli import main

    torch.save(reference(7, 8, nn.InstanceNorm2d).state_dict(), tmp_path / "latest_net_G.pth")
    out = tmp_path / "g.keras"
    assert main(["convert-official", str(tmp_path / "latest_net_G.pth"), "--out", str(out)]) == 0
    assert "unet_128" in capsys.readouterr().out
    keras = pytest.importorskip("keras")
    keras.utils.save_img(tmp_path / "in.png", np.zeros((100, 80, 3), "uint8"), scale=False)
    args = [
        "translate",
        str(tmp_path / "in.png"),
        "--model",
        str(out),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args) == 0
    assert keras.utils.load_img(tmp_path / "o" / "in.png").size == (80, 100)
    assert main(["convert-official", str(tmp_path / "nothing.pth"), "--out", str(out)]) == 1
    assert "nothing.pth: no such file" in capsys.readouterr().err
