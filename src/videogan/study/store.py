"""The answers: STUDY/answers.sqlite, one row per answer, each committed before the server replies.

SQLite in its default rollback-journal mode with synchronous=FULL: once `add` returns, the answer survives a
crash of the server or of the machine. UNIQUE(rater, pair) makes a second answer to one pair impossible,
whatever the browser retries.
"""
from __future__ import annotations

import re
import sqlite3
import threading
import time
from dataclasses import astuple, dataclass, fields, replace
from pathlib import Path

from ..data.decode import DataError

RATER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")  # what a rater id may be: no spaces, no markup
# the error for one that RATER_ID does not match
BAD_RATER_ID = "bad rater id (1-64 letters, digits, _ . @ -)"

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    rater TEXT NOT NULL,
    pair TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right')),
    chosen TEXT NOT NULL CHECK (chosen IN ('a', 'b', 'real', 'broken')),  -- what the chosen clip was
    ms INTEGER NOT NULL CHECK (ms >= 0),  -- time from both clips playing to the answer
    answered_at TEXT NOT NULL,  -- UTC, ISO 8601
    UNIQUE (rater, pair)
);
"""


class DuplicateAnswer(Exception):
    """This rater already answered this pair."""


@dataclass(frozen=True)
class Answer:
    rater: str
    pair: str
    choice: str  # "left" | "right"
    chosen: str  # "a" | "b" | "real" | "broken"
    ms: int
    answered_at: str = ""


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class AnswerStore:
    """One connection shared by the server's threads behind a lock (answers are tiny and rare)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lock = threading.Lock()
        # explicit transactions
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.executescript(SCHEMA)

    def answered(self, rater: str) -> set[str]:
        with self.lock:
            return {row[0] for row in self.db.execute("SELECT pair FROM answers WHERE rater = ?", (rater,))}

    def add(self, answer: Answer) -> None:
        """Insert and commit; DuplicateAnswer (and nothing written) if the rater answered this pair
        already."""
        answer = answer if answer.answered_at else replace(answer, answered_at=now_utc())
        with self.lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute("INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?)", astuple(answer))
                self.db.execute("COMMIT")
            except sqlite3.IntegrityError as e:
                self.db.execute("ROLLBACK")
                if "UNIQUE" not in str(e):
                    # a CHECK: the server validates answers first, so this is a bug, not a rater's doing
                    raise
                raise DuplicateAnswer(f"{answer.rater} already answered {answer.pair}") from None
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self.lock:
            self.db.close()


def read_answers(path: str | Path) -> list[Answer]:
    """All answers in the order given (a server may be writing at the same time). Opened for writing but
    only queried: an answer cut off by a crash leaves a hot journal, which SQLite rolls back on the first
    read, and only a connection that may write can do that (mode=rw still reads a write-protected file)."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True)
        try:
            db.execute("PRAGMA query_only = 1")
            names = ", ".join(f.name for f in fields(Answer))
            rows = db.execute(f"SELECT {names} FROM answers ORDER BY rowid").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        raise DataError(unreadable(path, e)) from None
    return [Answer(*row) for row in rows]


def unreadable(path: Path, error: sqlite3.DatabaseError) -> str:
    """Why the answers database at `path` could not be read, and what to do, in a line."""
    journal = path.with_name(f"{path.name}-journal")
    if "readonly" in str(error) and journal.exists():  # SQLITE_READONLY_ROLLBACK (Python 3.10 has no name)
        return (f"{path}: a write cut off by a crash left {journal.name}, which SQLite must roll back first, "
                f"but cannot without write access to the file and {path.parent}; run the report with that "
                "access, or on a copy of the study folder")
    return f"{path}: unreadable answers database ({error})"
