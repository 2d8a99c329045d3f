"""The paper's ablation studies: their definitions, the paper's tables, and tiny end-to-end runs."""

import json

import numpy as np
import pytest
from PIL import Image

from p2p_keras.jobs import ablate as ablation
from p2p_keras.inference import load_generator
from p2p_keras.losses import LOSS_ABLATIONS
from p2p_keras.jobs.synthetic import make_synthetic_facades

# --------------------------------------------------------------------------- definitions


def _names(study):
    return [variant["name"] for variant in ablation.STUDIES[study]]


def test_loss_study_is_table_1_with_the_loss_ablation_settings():
    assert _names("loss") == ["l1", "gan", "cgan", "l1+gan", "l1+cgan"]
    for variant in ablation.STUDIES["loss"]:
        assert variant["config"] == LOSS_ABLATIONS[variant["name"]]
    by_name = {v["name"]: v["config"] for v in ablation.STUDIES["loss"]}
    assert by_name["gan"]["conditional"] is False and by_name["gan"]["l1_weight"] == 0
    assert by_name["l1"]["gan_weight"] == 0 and by_name["l1+cgan"]["l1_weight"] == 100


def test_generator_study_crosses_architecture_and_objective():
    configs = [variant["config"] for variant in ablation.STUDIES["generator"]]
    assert [c["skip_connections"] for c in configs] == [False, False, True, True]
    assert [c["gan_weight"] for c in configs] == [0.0, 1.0, 0.0, 1.0]
    assert all(c["conditional"] and c["l1_weight"] == 100 for c in configs)


def test_patch_study_is_table_3_with_l1_plus_cgan():
    configs = [variant["config"] for variant in ablation.STUDIES["patch"]]
    assert [c["patch_size"] for c in configs] == [1, 16, 70, 286]
    assert all(
        {**c, "patch_size": None} == {**LOSS_ABLATIONS["l1+cgan"], "patch_size": None}
        for c in configs
    )


def test_paper_tables_match_the_paper():
    for study in ablation.STUDIES:
        assert list(ablation.PAPER_TABLES[study]["rows"]) == _names(study)
    loss = ablation.PAPER_TABLES["loss"]
    assert loss["rows"]["l1+cgan"] == (0.66, 0.23, 0.17)
    assert loss["rows"]["gan"] == (0.22, 0.05, 0.01)
    assert loss["reference"]["Ground truth"] == (0.80, 0.26, 0.21)
    assert ablation.PAPER_TABLES["generator"]["rows"]["encoder-decoder_l1+cgan"] == (
        0.29,
        0.09,
        0.05,
    )
    assert ablation.PAPER_TABLES["patch"]["rows"]["patch286"] == (0.42, 0.16, 0.11)


def test_select_variants_and_bad_names():
    assert [v["name"] for v in ablation.select_variants("patch", ["patch70", "patch1"])] == [
        "patch1",
        "patch70",
    ]
    with pytest.raises(ValueError, match="study must be one of"):
        ablation.select_variants("lr")
    with pytest.raises(ValueError, match="unknown loss variants"):
        ablation.select_variants("loss", ["l2"])


def test_settings_a_study_varies_cannot_be_overridden(tmp_path):
    with pytest.raises(ValueError, match="patch_size"):
        ablation.run_ablation("patch", out=tmp_path, image_size=128, patch_size=70)
    assert not list(tmp_path.iterdir())


def test_image_size_is_checked_before_training():
    with pytest.raises(ValueError, match="patch286.*128"):
        ablation.check_image_size(ablation.STUDIES["patch"], 64)
    with pytest.raises(ValueError, match="nearest valid size"):
        ablation.check_image_size(ablation.STUDIES["loss"], 100)
    ablation.check_image_size(ablation.STUDIES["patch"], 128)
    ablation.check_image_size(ablation.STUDIES["loss"], 32)


def test_compare_with_paper_puts_every_paper_row_next_to_ours():
    results = [{"name": "l1", "l1": 0.25, "psnr": 14.0}, {"name": "l1+cgan", "l1": 0.3}]
    text = ablation.compare_with_paper("loss", results)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 5 + 1  # header, five losses, ground truth
    assert "| L1 | 0.42 | 0.15 | 0.11 | 0.25 | 14 |" in text
    assert "| GAN | 0.22 | 0.05 | 0.01 | - | - |" in text
    assert "| L1+cGAN | 0.66 | 0.23 | 0.17 | 0.3 | n/a |" in text
    assert "| Ground truth | 0.80 | 0.26 | 0.21 | - | - |" in text
    assert "Table 1" in text


def test_ablation_grid_has_a_labelled_column_per_variant():
    rng = np.random.default_rng(0)
    inputs, targets = rng.uniform(-1, 1, (2, 2, 32, 32, 3)).astype("float32")
    outputs = {"L1": np.zeros_like(inputs), "L1+cGAN": np.ones_like(inputs)}
    grid = ablation.ablation_grid(inputs, outputs, targets, header=18)
    assert grid.shape == (18 + 2 * 128, 4 * 128, 3)  # 32 px enlarged 4x to 128
    assert grid[18:, 128:256].max() == 128 and grid[18:, 256:384].min() == 255
    header = grid[:18]
    for column in range(4):
        assert header[:, column * 128 : (column + 1) * 128].min() < 100  # some text drawn


# --------------------------------------------------------------------------- end to end


def _check_outputs(out, study, results, names, direction="BtoA"):
    assert [r["name"] for r in results] == names
    saved = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in saved["results"]] == names
    assert saved["budget"]["study"] == study
    # `filters` went through **train_kwargs to every variant, and into the stated budget
    assert (saved["budget"]["filters"], saved["budget"]["direction"]) == (8, direction)
    table = (out / "results.md").read_text()
    labels = {v["name"]: v["label"] for v in ablation.STUDIES[study]}
    for result in results:
        rows = [
            line for line in table.splitlines() if line.startswith(f"| {labels[result['name']]} |")
        ]
        assert len(rows) == 2  # ours, and ours next to the paper
        assert 0 < result["l1"] < 2 and np.isfinite(result["psnr"]) and -1 < result["ssim"] <= 1
        assert result["train_seconds"] > 0 and "g_l1" in result["final_losses"]
        config = json.loads((out / result["name"] / "config.json").read_text())
        for key, value in result["config"].items():
            assert config[key] == value, (result["name"], key)
        assert (config["filters"], config["direction"]) == (8, direction)
    with Image.open(out / "grid.png") as grid:
        assert grid.width >= (len(names) + 2) * 128


@pytest.fixture(scope="module")
def data_64(tmp_path_factory):
    return make_synthetic_facades(
        tmp_path_factory.mktemp("ablation64") / "data", train=4, val=4, test=2, size=64
    )


def test_loss_study_end_to_end(data_64, tmp_path):
    results = ablation.run_ablation(
        "loss",
        data=str(data_64),
        out=tmp_path,
        epochs=1,
        steps_per_epoch=2,
        image_size=64,
        filters=8,
        max_eval_images=2,
    )
    _check_outputs(tmp_path, "loss", results, _names("loss"))
    assert all(r["n_images"] == 2 for r in results)
    # same seed, same budget: the variants differ only by their objective
    assert len({round(r["l1"], 6) for r in results}) > 1


def test_patch_study_end_to_end(tmp_path_factory, tmp_path):
    data = make_synthetic_facades(
        tmp_path_factory.mktemp("ablation128") / "data", train=2, val=2, test=2, size=128
    )
    results = ablation.run_ablation(
        "patch",
        data=str(data),
        out=tmp_path,
        epochs=1,
        steps_per_epoch=1,
        image_size=128,
        filters=8,
    )
    _check_outputs(tmp_path, "patch", results, _names("patch"))
    assert "Table 3" in (tmp_path / "results.md").read_text()


def test_generator_variant_trains_without_skips(data_64, tmp_path):
    results = ablation.run_ablation(
        "generator",
        data=str(data_64),
        out=tmp_path,
        epochs=1,
        steps_per_epoch=1,
        image_size=64,
        filters=8,
        direction="AtoB",  # an explicit direction wins over the synthetic facades' BtoA
        variants=["encoder-decoder_l1"],
        eval_split="test",
        dropout=True,
        batch_stats=True,
    )
    _check_outputs(tmp_path, "generator", results, ["encoder-decoder_l1"], direction="AtoB")
    generator = load_generator(tmp_path / "encoder-decoder_l1" / "generator.keras")
    assert generator.name == "encoder_decoder_generator"
    budget = json.loads((tmp_path / "results.json").read_text())["budget"]
    assert (budget["eval_split"], budget["dropout"], budget["batch_stats"]) == ("test", True, True)
