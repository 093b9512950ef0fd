"""Categorical columns, .npz arrays and image folders: loading, encoding and validation, each bad input by name."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.core.config import DataConfig, ValidationConfig
from pipeline.core.data import load_data, split_dataset
from pipeline.core.encoding import CategoricalEncoder, UnseenCategory
from pipeline.core.errors import DataValidationError
from tests.data.image_folders import write_digit_pngs


def _table(n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"mean radius": rng.normal(size=n), "colour": rng.choice(["red", "green", "blue"], n),
                         "grade": rng.choice([1, 2], n), "label": rng.choice(["benign", "malignant"], n)})


def test_encoder_one_hots_declared_columns_and_refuses_unseen_values_by_column():
    frame = _table()
    enc = CategoricalEncoder.fit(frame, ("mean radius", "colour", "grade"), ("colour", "grade"))
    assert enc.feature_columns == ("mean radius", "colour=blue", "colour=green", "colour=red", "grade=1", "grade=2")
    x = enc.transform(frame)
    assert x.shape == (len(frame), 6) and x.dtype == np.float32
    assert (x[:, 1:4].sum(axis=1) == 1).all() and (x[:, 4:].sum(axis=1) == 1).all()
    assert x[frame["colour"].eq("red").to_numpy(), 3].min() == 1.0
    back = enc.inverse_transform(x[:5])
    assert list(back["colour"]) == list(frame["colour"][:5])
    # Integer categories read back from a CSV as text or floats are the same categories.
    assert (enc.transform(frame.assign(grade=frame["grade"].astype(float))) == x).all()
    again = CategoricalEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert again == enc
    with pytest.raises(UnseenCategory, match="'colour' has 1 value") as e:
        enc.transform(frame.assign(colour=["purple"] + list(frame["colour"][1:])), "predict")
    assert e.value.exit_code == 3 and "purple" not in str(e.value)  # text cells are withheld, as in validation


def test_categorical_split_uses_encoded_features_and_keeps_the_input_columns(tmp_path):
    path = tmp_path / "t.csv"
    _table().to_csv(path, index=False)
    ds = load_data(path, DataConfig(categorical_columns=("colour", "grade")))
    sp = split_dataset(ds, 0.25, 0)
    assert sp.input_columns == ("mean radius", "colour", "grade")
    assert sp.x_train.shape[1] == 6 and sp.classes == ("benign", "malignant")


def _validate(ds, suite_path=None, data=None, **v):
    from pipeline.core.validation.dataset import validate_dataset

    return validate_dataset(ds, suite_path, ValidationConfig(label_errors=False, **v), data or DataConfig())


def test_undeclared_text_column_fails_validation_by_name(tmp_path, digits_frame):
    from pipeline.core.validation.suite import infer_suite

    suite = tmp_path / "s.json"
    suite.write_text(json.dumps(infer_suite(digits_frame, "s", "label", "digits")))
    path = tmp_path / "d.csv"
    digits_frame.assign(**{"shop name": "corner"}).to_csv(path, index=False)
    report = _validate(load_data(path, DataConfig()), suite)
    failed = {c.name: c.message for c in report.failed}
    assert "feature types" in failed and "'shop name'" in failed["feature types"]


def test_suite_inference_accepts_declared_categoricals_and_string_labels_with_spaces(tmp_path):
    from pipeline.core.validation.suite import infer_suite

    frame = _table(300)
    suite = infer_suite(frame, "t", "label", "t.csv", categorical=("colour", "grade"))
    sets = [e["kwargs"]["value_set"] for e in suite["expectations"]
            if e["type"] == "expect_column_distinct_values_to_be_in_set"]
    assert ["blue", "green", "red"] in sets and [1, 2] in sets
    path, suite_path = tmp_path / "t.csv", tmp_path / "t.json"
    frame.to_csv(path, index=False)
    suite_path.write_text(json.dumps(suite))
    data = DataConfig(categorical_columns=("colour", "grade"))
    report = _validate(load_data(path, data), suite_path, data, max_target_leakage=1.0)
    assert not [c for c in report.failed if c.name != "target leakage"], [c.message for c in report.failed]


def test_npz_arrays_flatten_and_keep_an_image_shape(tmp_path):
    x = np.random.default_rng(0).random((40, 1, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(40) % 2)
    ds = load_data(tmp_path / "a.npz", DataConfig())
    assert ds.frame.shape == (40, 65) and ds.image_shape == (1, 8, 8)
    assert np.allclose(ds.frame["x_9"].to_numpy(), x[:, 0, 1, 1])  # C,H,W order
    np.savez(tmp_path / "b.npz", x=x)
    with pytest.raises(DataValidationError, match="lacks array y"):
        load_data(tmp_path / "b.npz", DataConfig())
    (tmp_path / "c.npz").write_bytes(b"not a zip")
    with pytest.raises(DataValidationError, match="c.npz"):
        load_data(tmp_path / "c.npz", DataConfig())


def test_image_folder_loads_as_chw_rows_with_a_manifest(tmp_path):
    from PIL import Image

    root = write_digit_pngs(tmp_path / "img", per_class=3, size=12)
    Image.new("RGB", (20, 10), (255, 0, 0)).save(root / "1" / "red.png")
    ds = load_data(root, DataConfig(image_size=(4, 6), image_channels=3))
    assert ds.image_shape == (3, 4, 6) and ds.frame.shape == (10, 3 * 4 * 6 + 1)
    red = ds.frame[ds.manifest["path"].eq("1/red.png").to_numpy()].iloc[0].drop("label").to_numpy(float)
    assert np.allclose(red[:24], 1.0) and np.allclose(red[24:], 0.0)  # the red plane first: C,H,W
    assert set(ds.frame["label"]) == {"0", "1", "2"}
    assert {"path", "class", "width", "height", "channels", "mean_intensity", "contrast", "content_hash"} \
        <= set(ds.manifest.columns)
    assert ds.manifest.set_index("path").loc["1/red.png", ["width", "height", "channels"]].tolist() == [20, 10, 3]
    spec = split_dataset(ds, 0.3, 0).input_spec
    assert (spec.n_features, spec.channels, spec.height, spec.width) == (72, 3, 4, 6)


@pytest.fixture()
def images(tmp_path):
    return write_digit_pngs(tmp_path / "img", per_class=20, size=16)


def test_clean_image_folder_passes(images):
    report = _validate(load_data(images, DataConfig()))
    assert report.passed, [c.message for c in report.failed]
    assert {"readable images", "image sizes and modes", "labels", "class imbalance", "train-test leakage"} \
        <= {c.name for c in report.checks}


def test_corrupted_png_and_text_file_are_named(images):
    png = images / "1" / "1_0003.png"
    png.write_bytes(png.read_bytes()[:60])  # truncated
    (images / "2" / "notes.txt").write_text("scanned on monday")
    (images / "0" / "0_0001.png").write_text("not a png at all")
    failed = {c.name: c.message for c in _validate(load_data(images, DataConfig())).failed}
    message = failed["readable images"]
    assert "1/1_0003.png" in message and "2/notes.txt" in message and "0/0_0001.png" in message


def test_empty_class_folder_is_refused_by_name(images):
    (images / "7").mkdir()
    with pytest.raises(DataValidationError, match="class folder .*7 holds no images") as e:
        load_data(images, DataConfig())
    assert e.value.exit_code == 3


def test_one_class_and_tiny_class_fail_the_label_checks(tmp_path):
    one = write_digit_pngs(tmp_path / "one", per_class=20, classes=(4,))
    assert "labels" in {c.name for c in _validate(load_data(one, DataConfig())).failed}
    tiny = write_digit_pngs(tmp_path / "tiny", per_class=20, classes=(0, 1))
    write_digit_pngs(tiny, per_class=3, classes=(2,))
    failed = {c.name: c.message for c in _validate(load_data(tiny, DataConfig()), max_imbalance_ratio=5).failed}
    assert "2 (3)" in failed["labels"] and "class 2: 3 rows" in failed["class imbalance"]


def test_identical_images_across_the_split_are_named(images):
    import shutil

    for i in range(20):  # copies of class 0's images: some land in test while their twin is in train
        shutil.copy(images / "0" / f"0_{i:04d}.png", images / "0" / f"copy_{i:04d}.png")
    failed = {c.name: c.message for c in _validate(load_data(images, DataConfig())).failed}
    assert "train-test leakage" in failed and "copy_" in failed["train-test leakage"]


def test_mixed_sizes_and_modes_follow_the_policy(images):
    write_digit_pngs(images, per_class=2, classes=(1,), size=24, mode="RGB", start=40)
    ds = load_data(images, DataConfig())
    assert _validate(ds).passed
    failed = {c.name: c.message for c in _validate(ds, image_mixed_sizes=False, image_mixed_modes=False).failed}
    assert "1/1_0000.png" in failed["image sizes and modes"] and "24x24" in failed["image sizes and modes"]
    small = {c.name for c in _validate(ds, min_image_side=20).failed}
    assert "image sizes and modes" in small


def test_missing_label_column_is_refused(tmp_path, digits_frame):
    path = tmp_path / "d.csv"
    digits_frame.drop(columns="label").to_csv(path, index=False)
    with pytest.raises(DataValidationError, match="label column 'label' missing") as e:
        load_data(path, DataConfig())
    assert e.value.exit_code == 3


@pytest.mark.parametrize("labels", [["no", "yes"], [0, 1], ["cat", "dog", "bird"], [3, 7, 11]])
def test_any_column_names_and_label_kinds_split(tmp_path, labels):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"mean radius (mm)": rng.normal(size=90), "worst  texture": rng.normal(size=90),
                          "label": [labels[i % len(labels)] for i in range(90)]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    sp = split_dataset(load_data(tmp_path / "t.csv", DataConfig()), 0.2, 0)
    assert sp.feature_columns == ("mean radius (mm)", "worst  texture")
    assert sorted(map(str, sp.classes)) == sorted(map(str, labels))
    assert set(np.unique(sp.y_test)) == set(range(len(labels)))  # stratified: every class in test


def _cli(capsys, *args: str) -> tuple[int, str]:
    from flows.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("damage, named", [("corrupt", "1/1_0003.png"), ("text", "2/notes.txt"),
                                           ("empty", "7"), ("one-class", "1 class(es)"),
                                           ("no-classes", "no class folders")])
def test_mpops_validate_exits_3_naming_the_file(tmp_path, capsys, damage, named):
    root = write_digit_pngs(tmp_path / "img", per_class=12, classes=(4,) if damage == "one-class" else (0, 1, 2))
    if damage == "corrupt":
        png = root / "1" / "1_0003.png"
        png.write_bytes(png.read_bytes()[:70])
    elif damage == "text":
        (root / "2" / "notes.txt").write_text("scanned on monday")
    elif damage == "empty":
        (root / "7").mkdir()
    elif damage == "no-classes":  # images without class folders: no labels to train on
        root = root / "0"
    code, err = _cli(capsys, "validate", "--data", str(root), "--set", f"validation.report_dir={tmp_path / 'out'}")
    assert code == 3 and err.startswith("error: ") and named in err, err


def test_jpeg_and_palette_images_load(tmp_path):
    from PIL import Image

    root = write_digit_pngs(tmp_path / "img", per_class=2, size=12)
    Image.new("RGB", (12, 12), (0, 200, 0)).save(root / "0" / "green.jpg", quality=95)
    Image.new("P", (12, 12), 3).save(root / "1" / "palette.png")
    ds = load_data(root, DataConfig(image_size=(12, 12)))
    assert (ds.manifest["status"] == "ok").all()
    assert ds.manifest.set_index("path").loc["1/palette.png", "mode"] == "P"
