"""The paper's realism study (two-alternative forced choice) as a local web app.

    create.py    draw clips from two sources (data or runs), write them as videos, plan pairs and catch trials
    manifest.py  STUDY/study.json: the sides, the clips, the pairs (the key raters never see)
    store.py     STUDY/answers.sqlite: one row per answer, committed before the next pair is shown
    server.py    the page and its JSON API (standard library HTTP server, loopback by default)
    page.html    the page: two looping clips, click or arrow keys, progress; inline CSS/JS only
    report.py    share preferring A over B (95% Wilson interval), per-rater counts, catch failures, CSV, PNG
"""
from .create import CreateSettings, create
from .manifest import Pair, Side, Study, load_study
from .report import report, summarize, wilson_interval
from .server import StudyServer, serve
from .store import Answer, AnswerStore, read_answers

__all__ = ["Answer", "AnswerStore", "CreateSettings", "Pair", "Side", "Study", "StudyServer", "create",
           "load_study", "read_answers", "report", "serve", "summarize", "wilson_interval"]
