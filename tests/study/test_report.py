import csv
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from videogan.cli import main
from videogan.data.decode import DataError
from videogan.study.manifest import load_study
from videogan.study.report import report, summarize, wilson_interval
from videogan.study.store import Answer, AnswerStore


def test_wilson_interval_matches_known_values():
    # worked by hand from the score-interval formula (e.g. 18/100: centre 0.191838, half-width 0.074836)
    assert wilson_interval(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-6)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-6)
    assert wilson_interval(18, 100) == pytest.approx((0.117002, 0.266674), abs=1e-6)
    assert wilson_interval(10, 10) == pytest.approx((0.722467, 1.0), abs=1e-6)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _answer_all(study_dir, rater, pick):
    """Answer every pair as `pick(pair) -> "left"|"right"` says; returns the answers."""
    study = load_study(study_dir)
    store = AnswerStore(study_dir / "answers.sqlite")
    out = []
    for i, p in enumerate(study.pairs):
        choice = pick(p)
        out.append(Answer(rater, p.id, choice, p.chosen(choice), 1000 + 10 * i))
        store.add(out[-1])
    store.close()
    return out


def _prefer(what):
    return lambda p: "left" if p.left_is == what or (p.kind == "catch" and p.left_is == "real") else "right"


def test_report_counts_shares_catch_failures_and_exclusions(fresh_study, tmp_path):
    study = load_study(fresh_study)  # 4 ab pairs, 2 catch trials
    _answer_all(fresh_study, "careful", _prefer("a"))  # A always, catch passed
    # always left: fails the catch trial with broken on the left
    _answer_all(fresh_study, "sloppy", lambda p: "left")
    broken_left = sum(p.kind == "catch" and p.left_is == "broken" for p in study.pairs)
    a_left = sum(p.kind == "ab" and p.left_is == "a" for p in study.pairs)
    assert broken_left == 1 and a_left == 2  # create balances sides

    s = report(fresh_study)
    assert s["a_over_b"]["k"] == 4 + a_left and s["a_over_b"]["n"] == 8
    assert (s["a_over_b"]["share"] == pytest.approx(6 / 8)
            and s["a_over_b"]["ci95"] == pytest.approx(list(wilson_interval(6, 8))))
    assert (s["catch_failure"]["k"], s["catch_failure"]["n"]) == (1, 4)
    assert (sum(v["k"] for v in s["catch_failure_by_kind"].values()) == 1
            and set(s["catch_failure_by_kind"]) == {"shuffled", "frozen"})
    assert (s["raters"], s["raters_failed_catch"], s["excluded_raters"]) == (2, 1, [])
    per = {r["rater"]: r for r in s["per_rater"]}
    assert per["careful"] == {"rater": "careful", "answers": 6, "ab_trials": 4, "chose_a": 4,
                              "catch_trials": 2, "catch_failed": 0, "median_ms": 1025.0, "excluded": False}
    assert (per["sloppy"]["chose_a"], per["sloppy"]["catch_failed"]) == (a_left, 1)

    excluded = report(fresh_study, out=tmp_path / "strict", exclude_failed_catch=True)
    assert (excluded["excluded_raters"] == ["sloppy"]
            and (excluded["a_over_b"]["k"], excluded["a_over_b"]["n"]) == (4, 4))
    assert excluded["catch_failure"]["n"] == 4  # catch failures are counted over every rater

    with open(tmp_path / "strict" / "answers.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {r["excluded"] for r in rows if r["rater"] == "sloppy"} == {"1"}
    assert all(r["chosen"] == (r["left_is"] if r["choice"] == "left" else r["right_is"]) for r in rows)
    with open(tmp_path / "strict" / "raters.csv") as f:
        raters = list(csv.DictReader(f))
    assert [(r["rater"], r["catch_failed"], r["excluded"]) for r in raters] == [("careful", "0", "False"),
                                                                                ("sloppy", "1", "True")]
    assert json.loads((tmp_path / "strict" / "summary.json").read_text())["a_over_b"] == excluded["a_over_b"]
    chart = Image.open(tmp_path / "strict" / "chart.png")
    assert chart.size[0] == 760 and len(chart.convert("RGB").getcolors(1 << 16)) > 3  # not blank
    assert (fresh_study / "report" / "chart.png").is_file()  # the default folder


def test_report_refuses_empty_or_foreign_answers(fresh_study):
    with pytest.raises(DataError, match="no answers yet"):
        report(fresh_study)
    store = AnswerStore(fresh_study / "answers.sqlite")
    store.add(Answer("r", "p999", "left", "a", 1))
    store.close()
    with pytest.raises(DataError, match="answer to pair 'p999', which this study does not have"):
        summarize(load_study(fresh_study), [Answer("r", "p999", "left", "a", 1)])


def test_cli_report(fresh_study, tmp_path, capsys):
    _answer_all(fresh_study, "r1", _prefer("b"))
    assert main(["study", "report", str(fresh_study), "--exclude-failed-catch",
                 "--out", str(tmp_path / "r")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["a_over_b"]["k"], printed["a_over_b"]["n"], printed["excluded_raters"]) == (0, 4, [])
    assert "per_rater" not in printed and (tmp_path / "r" / "answers.csv").is_file()
    assert main(["study", "report", str(tmp_path / "nothing")]) == 2
    assert "not a study directory" in capsys.readouterr().err


def _crash_mid_write(db: Path) -> None:
    """What a server killed in the middle of committing an answer leaves: a hot rollback journal."""
    writer = subprocess.Popen([sys.executable, "-c", f"""
import sqlite3, sys, time
db = sqlite3.connect({str(db)!r}, isolation_level=None)
db.execute("PRAGMA cache_size = 1")  # spill the changes into the database file before the commit
db.execute("BEGIN IMMEDIATE")
for i in range(100):
    db.execute("INSERT INTO answers VALUES (?, 'p000', 'left', 'a', 1, 'x')", (f"ghost{{i}}" + "x" * 60,))
print("written", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "written\n"
    finally:
        writer.kill()  # SIGKILL: no rollback, no cleanup
        writer.wait()
        writer.stdout.close()


def test_report_recovers_a_database_left_mid_write_by_a_crash(fresh_study, tmp_path, capsys):
    answered = _answer_all(fresh_study, "r1", _prefer("a"))
    db = fresh_study / "answers.sqlite"
    _crash_mid_write(db)
    journal = fresh_study / "answers.sqlite-journal"
    assert journal.stat().st_size > 0
    with pytest.raises(sqlite3.OperationalError, match="readonly"):  # hot: read-only cannot roll it back
        sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute("SELECT count(*) FROM answers").fetchall()
    assert main(["study", "report", str(fresh_study), "--out", str(tmp_path / "r")]) == 0
    assert json.loads(capsys.readouterr().out)["answers"] == len(answered)  # the committed ones, no ghost
    assert not journal.exists()
