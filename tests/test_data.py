"""Reading and validating Kaggle files: every bad input is one clear message naming file and place."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import PIXELS, ROOT, SAMPLE, run_cli, write_csv

from competition.data import default_data_dir, read_test, read_train
from competition.errors import UserError


def test_sample_reads_as_uint8_images() -> None:
    train, test = read_train(SAMPLE), read_test(SAMPLE)
    assert train.images.shape == (10_000, 28, 28) and train.images.dtype == np.uint8
    assert train.labels is not None and set(np.unique(train.labels)) == set(range(10))
    assert test.images.shape == (2_000, 28, 28) and test.labels is None


def test_csv_gz_zip_and_folder_give_the_same_arrays(tmp_path: Path, good_rows: list[list[int]]) -> None:
    plain = write_csv(tmp_path / "train.csv", ["label", *PIXELS], good_rows)
    gz = write_csv(tmp_path / "train2.csv.gz", ["label", *PIXELS], good_rows)
    archive = tmp_path / "digit-recognizer.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(plain, "train.csv")
        zf.writestr("test.csv", ",".join(PIXELS) + "\n" + ",".join(["0"] * 784) + "\n")
    readings = [read_train(plain), read_train(gz), read_train(archive), read_train(tmp_path)]
    for digits in readings[1:]:
        np.testing.assert_array_equal(digits.images, readings[0].images)
        np.testing.assert_array_equal(digits.labels, readings[0].labels)
    assert readings[0].images[3].ravel().tolist() == good_rows[3][1:]
    assert len(read_test(archive)) == 1



CASES = {
    "missing column": (["label", *PIXELS[:-1]], lambda r: [row[:-1] for row in r], "784 columns, expected 785"),
    "extra column": (["label", *PIXELS, "extra"], lambda r: [row + [0] for row in r], "extra column 'extra'"),
    "misordered": (["label", PIXELS[1], PIXELS[0], *PIXELS[2:]], lambda r: r, "column 2 is 'pixel1', expected 'pixel0' (columns out of order)"),
    "renamed": (["label", "px0", *PIXELS[1:]], lambda r: r, "column 2 is 'px0'"),
    "non-numeric": (["label", *PIXELS], lambda r: [r[0], r[1][:5] + ["abc"] + r[1][6:]] + r[2:], "line 3, column pixel4: 'abc' is not a number"),
    "nan": (["label", *PIXELS], lambda r: [r[0], r[1], r[2][:10] + [""] + r[2][11:]] + r[3:], "line 4, column pixel9: missing value"),
    "over 255": (["label", *PIXELS], lambda r: [r[0][:100] + [256] + r[0][101:]] + r[1:], "line 2, column pixel99: 256 is not an integer in 0..255"),
    "negative": (["label", *PIXELS], lambda r: [r[0][:2] + [-3] + r[0][3:]] + r[1:], "line 2, column pixel1: -3 is not an integer"),
    "fraction": (["label", *PIXELS], lambda r: [r[0][:2] + [0.5] + r[0][3:]] + r[1:], "0.5 is not an integer"),
    "label 10": (["label", *PIXELS], lambda r: r[:4] + [[10] + r[4][1:]] + r[5:], "line 6, column label: 10 is not a digit 0..9"),
    "short row": (["label", *PIXELS], lambda r: [r[0], r[1][:-2]] + r[2:], "line 3 has 783 fields, the header has 785"),
    "long row": (["label", *PIXELS], lambda r: [r[0], r[1] + [7]] + r[2:], "line 3 has 786 fields, the header has 785"),
    "trailing comma": (["label", *PIXELS], lambda r: [[*row, ""] for row in r], "line 2 has 786 fields, the header has 785 (a trailing comma?)"),
    "label -1": (["label", *PIXELS], lambda r: r[:2] + [[-1] + r[2][1:]] + r[3:], "line 4, column label: -1 is not a digit 0..9"),
    "spaces in the header": ([" label", *(f" {p}" for p in PIXELS)], lambda r: r[:1] + [[11] + r[1][1:]] + r[2:],
                             "line 3, column label: 11 is not a digit"),
    "no label column": (PIXELS, lambda r: [row[1:] for row in r], "no 'label' column, so it looks like test data"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_train_file_names_file_and_place(tmp_path: Path, good_rows: list[list[int]], case: str) -> None:
    header, mutate, message = CASES[case]
    path = write_csv(tmp_path / "train.csv", header, mutate([list(r) for r in good_rows]))
    with pytest.raises(UserError) as info:
        read_train(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_test_file_with_label_column_is_refused(tmp_path: Path, good_rows: list[list[int]]) -> None:
    path = write_csv(tmp_path / "test.csv", ["label", *PIXELS], good_rows)
    with pytest.raises(UserError, match="has a 'label' column, so it looks like a training file"):
        read_test(path)


@pytest.mark.parametrize("content", [b"", b"\n\n", ("label," + ",".join(PIXELS) + "\n").encode()])
def test_empty_and_header_only_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(content)
    with pytest.raises(UserError, match="empty file|header only"):
        read_train(path)


def test_missing_paths_and_bad_zip(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        read_train(tmp_path / "nope.csv")
    with pytest.raises(UserError, match="no train.csv, train.csv.gz or digit-recognizer.zip"):
        read_train(tmp_path)
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable zip"):
        read_train(tmp_path / "x.zip")
    (tmp_path / "train.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(UserError, match="cannot read"):
        read_train(tmp_path / "train.csv.gz")


def test_in_a_kaggle_notebook_the_competition_data_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from competition import data

    kaggle = tmp_path / "kaggle" / "input" / "digit-recognizer"
    kaggle.mkdir(parents=True)
    monkeypatch.setattr(data, "KAGGLE_INPUT", kaggle)
    monkeypatch.chdir(tmp_path)
    assert default_data_dir() == data.SAMPLE_DIR  # no competition files there (yet)
    (kaggle / "train.csv").touch()
    assert default_data_dir() == kaggle
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv.gz").touch()
    assert default_data_dir() == data.DATA_DIR  # files the user put in data/ come first


def test_default_data_is_the_sample_until_data_is_fetched() -> None:
    expected = "data" if (ROOT / "data" / "train.csv").exists() or (ROOT / "data" / "train.csv.gz").exists() else "sample"
    assert default_data_dir().name == expected


def test_cli_bad_file_is_one_line_without_traceback(tmp_path: Path, good_rows: list[list[int]]) -> None:
    path = write_csv(tmp_path / "train.csv", ["label", *PIXELS], [r[:-1] for r in good_rows])
    proc = run_cli("cv", "--data", str(path), "--out", str(tmp_path / "run"))
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: ") and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_make_data_from_src_validates_then_copies(tmp_path: Path, good_rows: list[list[int]]) -> None:
    from competition.fetch import fetch_data

    src = tmp_path / "src"
    src.mkdir()
    write_csv(src / "train.csv", ["label", *PIXELS], good_rows)
    write_csv(src / "test.csv", PIXELS, [r[1:] for r in good_rows])
    dest = tmp_path / "data"
    fetch_data(src=src, dest=dest)
    assert len(read_train(dest)) == 10 and len(read_test(dest)) == 10
    bad = tmp_path / "bad"
    bad.mkdir()
    write_csv(bad / "train.csv", ["label", *PIXELS], [[11] + r[1:] for r in good_rows])
    write_csv(bad / "test.csv", PIXELS, [r[1:] for r in good_rows])
    fresh = tmp_path / "fresh"
    with pytest.raises(UserError, match="not a digit"):
        fetch_data(src=bad, dest=fresh)
    assert not list(fresh.glob("*.csv*"))


def test_make_data_without_source_or_kaggle_says_what_to_do(tmp_path: Path) -> None:
    env_home = tmp_path  # no ~/.kaggle/kaggle.json here
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "competition", "data"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "HOME": str(env_home), "PYTHONPATH": str(ROOT), "KAGGLE_KEY": ""}, timeout=120)
    assert proc.returncode == 1
    assert "make data SRC=" in proc.stderr and "Traceback" not in proc.stderr


def test_a_gzip_bomb_is_refused_at_the_size_cap_without_decompressing_it_whole(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    bomb = tmp_path / "train.csv.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as handle:  # 8 MB of "0," in a file of a few KB
        for _ in range(8):
            handle.write(b"0," * (2**19))
    assert bomb.stat().st_size < 100_000
    monkeypatch.setenv("COMPETITION_MAX_CSV_MB", "2")
    with pytest.raises(UserError, match=r"over 2 MB of CSV text .* set COMPETITION_MAX_CSV_MB higher"):
        read_train(bomb)
    monkeypatch.setenv("COMPETITION_MAX_CSV_MB", "lots")
    with pytest.raises(UserError, match="COMPETITION_MAX_CSV_MB='lots' is not a number"):
        read_train(bomb)


@pytest.mark.parametrize("fields", [2_000, 1_000_000])
def test_a_row_of_the_wrong_width_is_refused_not_read_as_an_image(tmp_path: Path, fields: int) -> None:
    path = tmp_path / "train.csv"
    path.write_text("label," + ",".join(PIXELS) + "\n" + ",".join(["1"] * fields) + "\n")
    with pytest.raises(UserError, match=f"line 2 has {fields:,} fields, the header has 785"):
        read_train(path)


@pytest.mark.parametrize("sep", [";", "\t"])
def test_a_file_separated_by_something_else_than_commas_says_so(tmp_path: Path, good_rows: list[list[int]], sep: str) -> None:
    path = tmp_path / "train.csv"
    path.write_text(sep.join(["label", *PIXELS]) + "\n" + "\n".join(sep.join(map(str, row)) for row in good_rows) + "\n")
    with pytest.raises(UserError, match=re.escape(f"separated by {sep!r}, not commas")):
        read_train(path)
