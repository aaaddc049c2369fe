import sqlite3

import pytest

from videogan.data.decode import DataError
from videogan.study.store import Answer, AnswerStore, DuplicateAnswer, read_answers, unreadable


def test_answers_are_committed_and_unique_per_rater_and_pair(tmp_path):
    path = tmp_path / "answers.sqlite"
    store = AnswerStore(path)
    store.add(Answer("r1", "p000", "left", "a", 1200))
    store.add(Answer("r1", "p001", "right", "broken", 900))
    store.add(Answer("r2", "p000", "right", "b", 5))
    # committed: another connection sees them while the store is still open
    assert ([(a.rater, a.pair, a.chosen) for a in read_answers(path)]
            == [("r1", "p000", "a"), ("r1", "p001", "broken"), ("r2", "p000", "b")])
    with pytest.raises(DuplicateAnswer, match="r1 already answered p000"):
        store.add(Answer("r1", "p000", "right", "b", 3))
    assert store.answered("r1") == {"p000", "p001"} and store.answered("nobody") == set()
    store.close()
    again = AnswerStore(path)  # reopening keeps everything, adds nothing
    assert len(read_answers(path)) == 3 and again.answered("r2") == {"p000"}
    assert read_answers(path)[0].answered_at.endswith("Z")
    again.close()


def test_the_schema_rejects_impossible_rows(tmp_path):
    store = AnswerStore(tmp_path / "answers.sqlite")
    for bad in (Answer("r", "p", "up", "a", 1), Answer("r", "p", "left", "c", 1),
                Answer("r", "p", "left", "a", -1)):
        with pytest.raises(sqlite3.IntegrityError):
            store.add(bad)
    store.add(Answer("r", "p", "left", "a", 1))  # the failed inserts left no open transaction behind
    assert len(read_answers(tmp_path / "answers.sqlite")) == 1
    store.close()


def test_reading_a_missing_or_broken_database(tmp_path):
    assert read_answers(tmp_path / "none.sqlite") == []
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(DataError, match="junk.sqlite: unreadable answers database"):
        read_answers(tmp_path / "junk.sqlite")


def test_a_hot_journal_that_cannot_be_rolled_back_is_explained_in_a_line(tmp_path):
    path = tmp_path / "answers.sqlite"
    error = sqlite3.OperationalError("attempt to write a readonly database")  # SQLITE_READONLY_ROLLBACK
    assert unreadable(path, error) == f"{path}: unreadable answers database ({error})"
    (tmp_path / "answers.sqlite-journal").write_bytes(b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7")
    message = unreadable(path, error)
    assert "answers.sqlite-journal" in message and f"write access to the file and {tmp_path}" in message
    assert "\n" not in message
