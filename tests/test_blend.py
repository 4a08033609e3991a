"""Blends of runs of different architectures, the refusals that keep OOF rows honest, and the runs table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE

from competition.blend import blend_runs, choose_weights, mix, select
from competition.cli import main
from competition.config import RECIPES, TrainConfig
from competition.cv import run_cv
from competition.data import Digits, read_train
from competition.ensemble import Ensemble
from competition.errors import UserError
from competition.infer import predict_proba
from competition.runs import list_runs, recipe_of


def _first_rows(n: int) -> Digits:
    full = read_train(SAMPLE)
    assert full.labels is not None
    return Digits(images=full.images[:n], labels=full.labels[:n], source=f"{full.source}[:{n}]")


def tiny_config(recipe: str, split_seed: int) -> TrainConfig:
    return RECIPES[recipe].replace(folds=2, epochs=2, batch_size=32, workers=0, seed=1, split_seed=split_seed)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny finished runs on the first 400 sample rows: two networks and nearest neighbours on one split, and a network on
    another split."""
    data, root = _first_rows(400), tmp_path_factory.mktemp("models")
    made = {}
    for name, recipe, split_seed in (("ref", "reference", 7), ("bn", "bncnn", 7), ("other", "reference", 8), ("knn", "knn", 7)):
        run_cv(data=data, out=root / name, config=tiny_config(recipe, split_seed))
        made[name] = root / name
    return made


def _members(labels: np.ndarray, qualities: list[float], rng: np.random.Generator) -> list[np.ndarray]:
    """Random (N, 10) probabilities, each member's true-class logit raised by its quality."""
    members = []
    for quality in qualities:
        logits = rng.normal(size=(len(labels), 10))
        logits[np.arange(len(labels)), labels] += quality
        members.append(np.exp(logits) / np.exp(logits).sum(1, keepdims=True))
    return members


def test_greedy_selection_never_has_more_errors_than_its_best_member() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    for _ in range(20):
        members = _members(labels, list(rng.uniform(0.5, 3, 4)), rng)
        counts = select(members, labels)
        blend = sum(c * m for c, m in zip(counts, members)) / counts.sum()
        errors = [(m.argmax(1) != labels).sum() for m in members]
        assert counts.sum() >= 1 and (blend.argmax(1) != labels).sum() <= min(errors)


def test_selection_weighs_when_it_holds_on_rows_it_did_not_select_on_and_equal_weights_win_ties() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 2000)
    strong, *weak = _members(labels, [4.0, 0.5, 0.5], rng)  # equal weights let two near-guessers outvote the strong one
    chosen = choose_weights([strong, *weak], labels)
    equal_errors = (mix([strong, *weak], [1, 1, 1]).argmax(1) != labels).sum()
    assert chosen.method == "greedy" and chosen.cross_validated_errors == {
        "equal": equal_errors, "greedy": chosen.cross_validated_errors["greedy"]}
    assert chosen.cross_validated_errors["greedy"] < equal_errors and chosen.weights[0] > 0.5
    assert (mix([strong, *weak], chosen.weights).argmax(1) != labels).sum() <= (strong.argmax(1) != labels).sum()
    same = choose_weights([strong, strong.copy()], labels)  # nothing to learn: both weightings make the same errors
    assert same.method == "equal" and same.weights.tolist() == [0.5, 0.5] and same.picks.tolist() == [1, 0]


def test_a_blend_of_two_architectures_is_accepted_everywhere_a_run_is(runs: dict[str, Path], tmp_path: Path, sample_head: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "blends" / "ref-bn"
    assert main(["blend", str(runs["ref"]), str(runs["bn"]), "--out", str(out)]) == 0
    report = json.loads((out / "blend.json").read_text())
    contest = report["cross_validated_errors"]
    assert report["method"].startswith("equal" if contest["equal"] <= contest["greedy"] else "greedy")
    if report["method"].startswith("greedy"):  # selection's guarantee, on the rows it selected on
        assert report["oof_errors"] <= min(m["oof_errors"] for m in report["members"])
    else:  # equal weights learn nothing from the rows: their errors there are their cross-validated errors
        assert report["oof_errors"] == contest["equal"] and {m["weight"] for m in report["members"]} == {0.5}
    change, best = report["against_best_member"], min(report["members"], key=lambda m: (m["oof_errors"], m["oof_loss"]))
    assert change["run"] == best["run"] and change["fixed"] - change["new_errors"] == best["oof_errors"] - report["oof_errors"]
    assert (out / "confusion.png").stat().st_size > 0
    assert sum(m["weight"] for m in report["members"]) == pytest.approx(1)
    oof = pd.read_csv(out / "oof.csv")
    assert len(oof) == 400 and (oof["label"] != oof["pred"]).sum() == report["oof_errors"]
    picked = [m for m in report["members"] if m["weight"] > 0]
    assert len(Ensemble.load(out).members) == 2 * len(picked)  # 2 folds per run the selection picked
    for member, weight in zip(report["members"], (0.7, 0.3)):  # both architectures in, whatever tiny runs picked
        member["weight"] = weight
    (out / "blend.json").write_text(json.dumps(report))
    ensemble = Ensemble.load(out)
    assert len(ensemble.members) == 4 and {m.config.arch for m in ensemble.members} == {"reference", "bncnn"}
    assert ensemble.weights is not None and ensemble.weights.tolist() == pytest.approx([0.35, 0.35, 0.15, 0.15])
    assert ensemble.cv_score() == report["oof_accuracy"]
    capsys.readouterr()
    assert main(["submit", "--models", str(out), "--data", str(sample_head), "--out", str(tmp_path / "sub.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "sub.csv")) == 40
    assert main(["evaluate", "--models", str(out), "--data", str(sample_head), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["models"] == 4
    drawing = tmp_path / "digit.png"
    from canvas import render
    from PIL import Image

    Image.fromarray(render(read_train(SAMPLE).images[0])).save(drawing)
    assert main(["predict", "--models", str(out), "--json", str(drawing)]) == 0
    assert json.loads(capsys.readouterr().out)["digits"][0]["models"] == 4


def test_nearest_neighbours_blend_with_a_network_and_submit_through_the_same_loader(
        runs: dict[str, Path], tmp_path: Path, sample_head: Path) -> None:
    config = json.loads((runs["knn"] / "cv_report.json").read_text())["config"]
    assert config["arch"] == "knn" and config["rotate"] == config["label_smoothing"] == 0  # the run says what it did
    neighbours = Ensemble.load(runs["knn"])
    assert [m.config.arch for m in neighbours.members] == ["knn", "knn"]
    data, first = _first_rows(400), neighbours.members[0]
    kept = np.setdiff1d(np.arange(400), first.extra["oof_index"])  # fold 1's training rows: each its own nearest
    assert (predict_proba(first.model, data.images[kept], first.normalize, bf16=False).argmax(1) == data.labels[kept]).all()
    out = tmp_path / "ref-knn"
    assert main(["blend", str(runs["ref"]), str(runs["knn"]), "--out", str(out)]) == 0
    assert main(["submit", "--models", str(out), "--data", str(sample_head), "--out", str(tmp_path / "sub.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "sub.csv")) == 40


def test_runs_that_do_not_line_up_or_are_gone_are_one_line_refusals(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"other: its split seed \(8\) differs from .*ref's \(7\)"):
        blend_runs(runs=[runs["ref"], runs["other"]], out=tmp_path / "x")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(runs["ref"] / "fold1.pt", unfinished)
    with pytest.raises(UserError, match="unfinished: not a finished cv run"):
        blend_runs(runs=[runs["ref"], unfinished], out=tmp_path / "x")
    assert not (tmp_path / "x").exists()
    copy, unpicked = tmp_path / "copy", tmp_path / "unpicked"
    shutil.copytree(runs["ref"], copy)
    shutil.copytree(runs["ref"], unpicked)  # the same predictions: adding it never improves on the first pick
    report = blend_runs(runs=[copy, unpicked], out=tmp_path / "b")
    assert [m["picks"] for m in report["members"]] == [1, 0] and [m["weight"] for m in report["members"]] == [0.5, 0.5]
    report["members"][0]["weight"], report["members"][1]["weight"] = 1, 0  # as a blend that chose selection's weights
    (tmp_path / "b" / "blend.json").write_text(json.dumps(report))
    shutil.rmtree(unpicked)
    assert len(Ensemble.load(tmp_path / "b").members) == 2  # a member without weight may go: it predicts nothing here
    shutil.rmtree(copy)
    with pytest.raises(UserError, match=f"member run {copy} is gone"):
        Ensemble.load(tmp_path / "b")


def test_a_run_named_twice_or_missing_folds_is_refused_and_a_blend_notices_a_member_trained_again(
        runs: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(UserError, match="ref: named twice"):
        blend_runs(runs=[runs["ref"], runs["bn"], runs["ref"].parent / "." / "ref"], out=tmp_path / "x")
    partial = tmp_path / "partial"
    shutil.copytree(runs["bn"], partial)
    (partial / "fold2.pt").unlink()
    with pytest.raises(UserError, match=r"partial: fold2.pt missing \(1 of its 2 fold models left\)"):
        blend_runs(runs=[runs["ref"], partial], out=tmp_path / "x")
    assert not (tmp_path / "x").exists()

    member = tmp_path / "member"
    shutil.copytree(runs["ref"], member)
    assert blend_runs(runs=[member, runs["bn"]], out=tmp_path / "b")["members"][0]["weight"] > 0  # the best member
    run_cv(data=_first_rows(400), out=member, config=tiny_config("reference", 7))  # finds both folds: rebuilds the same report
    assert Ensemble.load(tmp_path / "b").members  # loads: the rebuilt report has the same OOF loss
    shutil.move(member / "fold1.pt", tmp_path / "fold1.pt")
    with pytest.raises(UserError, match=r"b/blend.json: member .*member: fold1.pt missing"):
        Ensemble.load(tmp_path / "b")
    shutil.move(tmp_path / "fold1.pt", member / "fold1.pt")
    run_cv(data=_first_rows(400), out=member, config=tiny_config("reference", 7).replace(seed=2), force=True)
    with pytest.raises(UserError, match=r"member run .*member was trained again since this blend \(OOF loss .*, was"):
        Ensemble.load(tmp_path / "b")
    assert sorted(Path(row["name"]).name for row in list_runs(tmp_path)) == ["member"]  # not the blend, not `partial`
    assert "skipped" in caplog.text and "trained again" in caplog.text and "fold2.pt missing" in caplog.text


@pytest.mark.parametrize("weight", ["nan", -1, 0, 2, True, None])
def test_a_blend_file_whose_weights_cannot_weigh_is_refused(runs: dict[str, Path], tmp_path: Path, weight: object,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    blend = tmp_path / "models" / "b"
    report = blend_runs(runs=[runs["ref"], runs["bn"]], out=blend)
    for member in report["members"]:
        member["weight"] = weight
    (blend / "blend.json").write_text(json.dumps(report))
    with pytest.raises(UserError, match="b/blend.json: not a blend file"):
        Ensemble.load(blend)
    assert list_runs(tmp_path / "models") == [] and "skipped" in caplog.text


@pytest.mark.parametrize(("file", "content", "says"), [
    ("cv_report.json", "{not json", "cv_report.json: not a cv report .*: not JSON"),
    ("cv_report.json", '{"config": {}}', "cv_report.json: not a cv report .*: no data, rows, oof_accuracy, oof_loss"),
    ("cv_report.json", '{"config": [], "data": "d", "rows": 400, "oof_accuracy": 1, "oof_loss": 0}',
     "its config is not an object"),
    ("cv_report.json", '{"config": {}, "data": "d", "rows": 400, "oof_accuracy": 1, "oof_loss": "low"}',
     "rows, oof_accuracy, oof_loss should be numbers"),
    ("oof.csv", "", r"oof.csv: not a run's OOF table .*\(No columns"),
    ("oof.csv", "row,label\n0,1\n", "oof.csv: not a run's OOF table .*: no column p0, p1"),
    ("oof.csv", "label," + ",".join(f"p{d}" for d in range(10)) + "\n1" + ",x" * 10 + "\n", "oof.csv: not a run's OOF"),
    ("oof.csv", "label," + ",".join(f"p{d}" for d in range(10)) + "\n1" + ",0.1" * 10 + "\n", "oof.csv: 1 rows where"),
])
def test_a_damaged_run_is_a_one_line_refusal_and_the_runs_table_skips_it(
        runs: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture, file: str, content: str, says: str) -> None:
    damaged = tmp_path / "models" / "damaged"
    shutil.copytree(runs["ref"], damaged)
    (damaged / file).write_text(content)
    with pytest.raises(UserError, match=says):
        blend_runs(runs=[runs["ref"], damaged], out=tmp_path / "x")
    assert not (tmp_path / "x").exists()
    shutil.copytree(runs["bn"], tmp_path / "models" / "bn")
    if file == "cv_report.json":  # the table reads reports only
        assert [Path(row["name"]).name for row in list_runs(tmp_path / "models")] == ["bn"]
        assert "skipped" in caplog.text and "damaged" in caplog.text


def test_the_runs_table_lists_runs_and_blends_best_first(runs: dict[str, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = runs["ref"].parent
    blend_runs(runs=[runs["ref"], runs["bn"]], out=root / "blends" / "both")
    assert main(["runs", "--models", str(root), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {Path(r["name"]).name for r in rows} == {"ref", "bn", "other", "knn", "both"}
    assert [r["oof_accuracy"] for r in rows] == sorted((r["oof_accuracy"] for r in rows), reverse=True)
    kinds = {Path(r["name"]).name: (r["kind"], r["arch"], r.get("recipe"), r.get("changes")) for r in rows}
    assert kinds["bn"] == ("run", "bncnn", "bncnn", "") and kinds["ref"][2:] == ("reference", "") and kinds["both"][0] == "blend"
    ref = next(r for r in rows if Path(r["name"]).name == "ref")
    folds = json.loads((runs["ref"] / "cv_report.json").read_text())["folds"]
    assert ref["train_min"] == round(sum(f["seconds"] for f in folds) / 60, 1)  # the folds' fits, not one call's wall
    assert main(["runs", "--models", str(root)]) == 0
    table = capsys.readouterr().out
    assert "oof_accuracy" in table and "None" not in table  # no public score recorded: a blank
    damaged_log = tmp_path / "log.csv"
    damaged_log.write_text("time,file\n1,2\n")
    with pytest.raises(UserError, match="log.csv: not a submissions log: no column run"):
        list_runs(root, submissions=damaged_log)


def test_the_runs_table_names_a_runs_recipe_and_what_it_changed() -> None:
    assert recipe_of(RECIPES["drawn"].replace(seed=3, folds=3)) == ("drawn", "")  # seeds and folds change no recipe
    assert recipe_of(RECIPES["reference"].replace(redraw=0.3)) == ("reference", "redraw=0.3")  # as near drawn: the first
    assert recipe_of(TrainConfig(label_smoothing=0.0, lr=0.002)) == ("default", "label_smoothing=0")  # lr has a column
    assert recipe_of(RECIPES["resnet"].replace(stroke=0.5, pseudo_label="models/x")) == ("resnet", "stroke=0.5 pseudo_label=models/x")
    assert recipe_of(RECIPES["seed"].replace(epochs=3, workers=0)) == ("seed", "")  # run settings are no hyperparameters


def test_pseudo_labels_join_every_training_part_and_never_a_validation_part(runs: dict[str, Path], tmp_path: Path,
                                                                            sample_head: Path) -> None:
    from competition.checkpoint import load_checkpoint
    from competition.cv import data_digest
    from competition.data import fold_indices, read_test
    from competition.pseudo import pseudo_labels

    data, test = _first_rows(400), read_test(sample_head)
    assert data.labels is not None
    config = RECIPES["default"].replace(folds=2, epochs=1, batch_size=32, workers=0, split_seed=7,  # the source's split
                                        pseudo_label=str(runs["ref"]), pseudo_threshold=0.2)
    pseudo = pseudo_labels(source=runs["ref"], train=data, test=test, config=config, digest=data_digest(data))
    run_cv(data=data, out=tmp_path / "pl", config=config, pseudo=pseudo)
    splits = fold_indices(data.labels, folds=2, seed=config.fold_seed)
    validated = []
    for fold, (train_idx, val_idx) in enumerate(splits, start=1):
        # fold k's pseudo-labels are the source's fold-k model's confident answers: a model that never saw fold k's
        # validation rows
        source = load_checkpoint(runs["ref"] / f"fold{fold}.pt")
        assert set(source.extra["oof_index"]) == set(val_idx.tolist())
        probs = Ensemble.load(source.path).predict_proba(test.images)
        confident = probs.max(1) >= 0.2
        assert 0 < confident.sum() < len(test)  # a real selection, so the comparison below can fail
        assert np.array_equal(pseudo.labels[fold - 1], probs.argmax(1)[confident])
        assert np.array_equal(pseudo.images[fold - 1], test.images[confident])
        checkpoint = load_checkpoint(tmp_path / "pl" / f"fold{fold}.pt")
        assert checkpoint.extra["oof_index"] == val_idx.tolist()  # validation: the fold's own rows, nothing else
        assert checkpoint.extra["train_rows"] == len(train_idx) + len(pseudo.labels[fold - 1])
        validated += checkpoint.extra["oof_index"]
    assert sorted(validated) == list(range(400))
    with pytest.raises(UserError, match=r"was trained on .*\[:400\].*, not on .*\[:300\]"):
        other = _first_rows(300)
        pseudo_labels(source=runs["ref"], train=other, test=test, config=config, digest=data_digest(other))
    for changed in ({"split_seed": 8}, {"folds": 3}):  # another split: the source's fold k saw this run's fold k
        with pytest.raises(UserError, match=r"was trained on 2 folds of split seed 7, this run on \d folds? of split seed \d"):
            pseudo_labels(source=runs["ref"], train=data, test=test, config=config.replace(**changed),
                          digest=data_digest(data))
    partial = tmp_path / "partial"
    shutil.copytree(runs["ref"], partial)
    (partial / "fold2.pt").unlink()  # fold 2 would get no pseudo-labels at all
    with pytest.raises(UserError, match=r"--pseudo-label .*partial: .*partial: fold2.pt missing"):
        pseudo_labels(source=partial, train=data, test=test, config=config, digest=data_digest(data))


def test_pseudo_labels_refuse_a_smoothed_source_that_cannot_reach_the_threshold(tmp_path: Path, sample_head: Path) -> None:
    from competition.cv import data_digest
    from competition.data import read_test
    from competition.pseudo import pseudo_labels

    data, test = _first_rows(400), read_test(sample_head)
    smoothed = tiny_config("default", 7).replace(label_smoothing=0.5)  # trains towards 0.55 for the label
    run_cv(data=data, out=tmp_path / "ls", config=smoothed)
    config = tiny_config("default", 7).replace(pseudo_label=str(tmp_path / "ls"), pseudo_threshold=0.9)
    with pytest.raises(UserError, match=r"--pseudo-label .*ls: trained with label smoothing 0.5, so its probabilities "
                                        r"stay near 0.55 and below the threshold 0.9"):
        pseudo_labels(source=tmp_path / "ls", train=data, test=test, config=config, digest=data_digest(data))
    reachable = pseudo_labels(source=tmp_path / "ls", train=data, test=test, digest=data_digest(data),
                              config=config.replace(pseudo_threshold=0.15))
    assert len(reachable.labels) == 2 and sum(map(len, reachable.labels)) > 0
