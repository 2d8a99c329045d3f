"""The paper's ablation studies: their definitions, the paper's tables, and tiny end-to-end runs."""

import json

import numpy as np
import pytest

from p2p_keras.inference import load_generator
from p2p_keras.jobs import ablate as ablation
from p2p_keras.jobs import cli
from p2p_keras.jobs.options import TrainOptions
from p2p_keras.jobs.synthetic import make_synthetic_facades
from p2p_keras.losses import LOSS_ABLATIONS

# --------------------------------------------------------------------------- definitions


def _names(study):
    return [variant.name for variant in ablation.STUDIES[study]]


def test_loss_study_is_table_1():
    assert _names("loss") == ["l1", "gan", "cgan", "l1+gan", "l1+cgan"]
    assert all(v.networks == {} and v.loss == v.name for v in ablation.STUDIES["loss"])
    by_name = {v.name: v.overrides for v in ablation.STUDIES["loss"]}
    assert by_name["l1"] == {"conditional": True, "gan_weight": 0.0, "l1_weight": 100.0}
    assert by_name["gan"] == {"conditional": False, "gan_weight": 1.0, "l1_weight": 0.0}
    assert by_name["cgan"] == {"conditional": True, "gan_weight": 1.0, "l1_weight": 0.0}
    assert by_name["l1+gan"] == {"conditional": False, "gan_weight": 1.0, "l1_weight": 100.0}
    assert by_name["l1+cgan"] == {"conditional": True, "gan_weight": 1.0, "l1_weight": 100.0}


def test_every_variant_is_a_train_options_override():
    for study in ablation.STUDIES:
        for variant in ablation.STUDIES[study]:
            options = TrainOptions(**variant.overrides)  # only real fields, valid values
            assert {k: getattr(options, k) for k in variant.overrides} == variant.overrides


def test_generator_study_crosses_architecture_and_objective():
    overrides = [variant.overrides for variant in ablation.STUDIES["generator"]]
    assert [o["skip_connections"] for o in overrides] == [False, False, True, True]
    assert [o["gan_weight"] for o in overrides] == [0.0, 1.0, 0.0, 1.0]
    assert all(o["conditional"] and o["l1_weight"] == 100 for o in overrides)


def test_patch_study_is_table_3_with_l1_plus_cgan():
    overrides = [variant.overrides for variant in ablation.STUDIES["patch"]]
    assert [o["patch_size"] for o in overrides] == [1, 16, 70, 286]
    assert all(
        {**o, "patch_size": None} == {**LOSS_ABLATIONS["l1+cgan"], "patch_size": None}
        for o in overrides
    )


def test_paper_tables_match_the_paper():
    names = [name for study in ablation.STUDIES for name in _names(study)]
    assert list(ablation.PAPER_SCORES) == [*names, "Ground truth"]
    assert ablation.PAPER_SCORES["l1+cgan"] == (0.66, 0.23, 0.17)
    assert ablation.PAPER_SCORES["gan"] == (0.22, 0.05, 0.01)
    assert ablation.PAPER_SCORES["Ground truth"] == (0.80, 0.26, 0.21)
    assert ablation.PAPER_SCORES["encoder-decoder_l1+cgan"] == (0.29, 0.09, 0.05)
    assert ablation.PAPER_SCORES["patch286"] == (0.42, 0.16, 0.11)


def test_select_variants_and_bad_names():
    assert [v.name for v in ablation.select_variants("patch", ["patch70", "patch1"])] == [
        "patch1",
        "patch70",
    ]
    with pytest.raises(ValueError, match="study must be one of"):
        ablation.select_variants("lr")
    with pytest.raises(ValueError, match="unknown loss variants"):
        ablation.select_variants("loss", ["l2"])


def test_settings_a_study_varies_cannot_be_overridden(tmp_path):
    with pytest.raises(ValueError, match="patch_size"):
        ablation.run_ablation("patch", out=str(tmp_path), image_size=128, patch_size=70)
    with pytest.raises(ValueError, match="conditional"):  # also through the options
        ablation.run_ablation("loss", TrainOptions(out=str(tmp_path), conditional=False))
    assert not list(tmp_path.iterdir())


def test_image_size_is_checked_before_training():
    with pytest.raises(ValueError, match="patch286.*128"):
        ablation.check_image_size(ablation.STUDIES["patch"], 64)
    with pytest.raises(ValueError, match="nearest valid size"):
        ablation.check_image_size(ablation.STUDIES["loss"], 100)
    ablation.check_image_size(ablation.STUDIES["patch"], 128)
    ablation.check_image_size(ablation.STUDIES["loss"], 32)


def _rows(text):
    return [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]


def test_compare_with_paper_puts_every_paper_row_next_to_ours():
    results = [
        {"name": "l1", "label": "L1", "l1": 0.25, "psnr": 14.0},
        {"name": "l1+cgan", "label": "L1+cGAN", "l1": 0.3},
    ]
    text = ablation.compare_with_paper("loss", results)
    assert len(_rows(text)) == 1 + 5 + 1  # header, five losses, ground truth
    assert "| L1 | 0.42 | 0.15 | 0.11 | 0.25 | 14 |" in text
    assert "| GAN | 0.22 | 0.05 | 0.01 | - | - |" in text
    assert "| L1+cGAN | 0.66 | 0.23 | 0.17 | 0.3 | n/a |" in text
    assert "| Ground truth | 0.80 | 0.26 | 0.21 | - | - |" in text
    assert "Table 1" in text


def test_fcn_scores_stand_in_the_paper_columns_and_real_photos_are_ground_truth():
    fcn = {"per_pixel_acc": 0.5, "per_class_acc": 0.25, "class_iou": 0.125}
    results = [{"name": "patch70", "label": "70x70", **fcn, "l1": 0.3}]
    references = {"real photos": {"per_pixel_acc": 0.75}, "mean photo": {"l1": 0.4}}
    text = ablation.compare_with_paper("patch", results, references)
    header = _rows(text)[0]
    assert header.startswith("| variant | paper: Per-pixel acc. ↑ |")
    assert (
        "ours: Per-pixel acc. ↑ | ours: Per-class acc. ↑ | ours: Class IOU ↑ | ours: L1 ↓" in header
    )
    assert "| 70x70 | 0.66 | 0.23 | 0.17 | 0.5 | 0.25 | 0.125 | 0.3 |" in text
    assert "| Ground truth | 0.80 | 0.26 | 0.21 | 0.75 | n/a | n/a | n/a |" in text
    assert "| *mean photo* | - | - | - | n/a | n/a | n/a | 0.4 |" in text
    assert "| 1x1 (PixelGAN) | 0.39 | 0.15 | 0.10 | - | - | - | - |" in text


# --------------------------------------------------------------------------- end to end


def _check_outputs(out, study, results, names, direction="BtoA"):
    assert [r["name"] for r in results] == names
    saved = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in saved["results"]] == names
    assert saved["budget"]["study"] == study
    # `filters` went to every variant, and into the stated budget
    assert (saved["budget"]["filters"], saved["budget"]["direction"]) == (8, direction)
    assert {"mean photo"} <= set(saved["references"])  # the baselines beside our scores
    table = (out / "results.md").read_text()
    for result in results:
        assert len([row for row in _rows(table) if row.startswith(f"| {result['label']} |")]) == 1
        assert 0 < result["l1"] < 2 and np.isfinite(result["psnr"]) and -1 < result["ssim"] <= 1
        assert result["train_seconds"] > 0 and "g_l1" in result["final_losses"]
        config = json.loads((out / result["name"] / "config.json").read_text())
        for key, value in result["overrides"].items():
            assert config[key] == value, (result["name"], key)
        assert (config["filters"], config["direction"]) == (8, direction)
        assert (out / result["name"] / "evaluation" / "samples.png").is_file()
        assert f"]({result['name']}/evaluation/samples.png)" in table
        # synthetic data in a folder named "data": no known label palette, so no FCN-score
        assert "fcn" in result["unavailable"]


@pytest.fixture(scope="module")
def data_64(tmp_path_factory):
    return make_synthetic_facades(
        tmp_path_factory.mktemp("ablation64") / "data", train=4, val=4, test=2, size=64
    )


def test_loss_study_end_to_end(data_64, tmp_path):
    results = ablation.run_ablation(
        "loss",
        data=str(data_64),
        out=str(tmp_path),
        epochs=1,
        steps_per_epoch=2,
        image_size=64,
        filters=8,
        verbose=0,
        evaluation={"max_images": 2},
    )
    _check_outputs(tmp_path, "loss", results, _names("loss"))
    assert all(r["n_images"] == 2 for r in results)
    # same seed, same budget: the variants differ only by their objective
    assert len({round(r["l1"], 6) for r in results}) > 1
    assert "Table 1" in (tmp_path / "results.md").read_text()


def test_patch_study_end_to_end(tmp_path_factory, tmp_path):
    data = make_synthetic_facades(
        tmp_path_factory.mktemp("ablation128") / "data", train=2, val=2, test=2, size=128
    )
    options = TrainOptions(data=str(data), out=str(tmp_path), epochs=1, steps_per_epoch=1,
                           image_size=128, filters=8, verbose=0)  # fmt: skip
    results = ablation.run_ablation("patch", options, variants=["patch1", "patch286"])
    _check_outputs(tmp_path, "patch", results, ["patch1", "patch286"])
    assert "Table 3" in (tmp_path / "results.md").read_text()


def test_generator_variant_from_the_command_line(data_64, tmp_path, capsys):
    status = cli.main(
        ["ablate", "--study", "generator", "--variants", "encoder-decoder_l1",
         "--data", str(data_64), "--out", str(tmp_path), "--epochs", "1",
         "--steps-per-epoch", "1", "--image-size", "64", "--filters", "8", "--verbose", "0",
         "--direction", "AtoB",  # an explicit direction wins over the synthetic facades' BtoA
         "--eval-split", "test", "--dropout", "on", "--bn-stats", "batch"]
    )  # fmt: skip
    assert status == 0 and "Encoder-decoder (L1)" in capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    _check_outputs(tmp_path, "generator", results, ["encoder-decoder_l1"], direction="AtoB")
    generator = load_generator(tmp_path / "encoder-decoder_l1" / "generator.keras")
    assert generator.name == "encoder_decoder_generator"
    budget = json.loads((tmp_path / "results.json").read_text())["budget"]
    assert budget["epochs"] == 1 and budget["seed"] == 0  # the study's default seed
    evaluation = budget["evaluation"]
    assert (evaluation["split"], evaluation["dropout"], evaluation["batch_stats"]) == (
        "test",
        True,
        True,
    )
