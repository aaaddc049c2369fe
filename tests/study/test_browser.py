"""The page end to end in a real browser: Debian's chromium (/usr/bin/chromium) driven by Playwright's Python
package, kept off the network by its flags; `make test` installs chromium with apt-get where it is missing."""
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from videogan.study.manifest import load_study
from videogan.study.report import report
from videogan.study.store import read_answers

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed at /usr/bin/chromium "
                                       "(`make test` installs it: apt-get install chromium)")

CLIPS_PLAYING = """() => ['left', 'right'].every(id => {
    const v = document.getElementById(id);
    return !v.paused && v.readyState >= 2 && v.currentTime > 0 && v.videoWidth === 32
        && v.currentSrc.endsWith('.webm');
})"""


@pytest.fixture
def server(serving, run_study, tmp_path):
    return serving(Path(shutil.copytree(run_study, tmp_path / "study")))


def test_a_rater_answers_a_dozen_pairs_by_click_and_key_with_a_reload(server, tmp_path):
    study = load_study(server.study.root)
    assert len(study.pairs) == 12
    answered: dict[str, str] = {}
    urls: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(str(tmp_path / "profile"),
                                                       executable_path=str(CHROMIUM), headless=True,
                                                       args=FLAGS)
        page = browser.new_page()
        page.on("request", lambda r: urls.append(r.url))
        # script errors, and console errors such as Content-Security-Policy violations
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(server.url)
        page.fill("#rater", "rater-1")
        page.click("#start-button")
        for i in range(12):
            if i == 6:  # mid-way: the answers so far are kept, the same rater goes on where they left off
                page.reload()
            page.wait_for_function("() => document.body.dataset.state === 'ready'")
            page.wait_for_function(CLIPS_PLAYING)  # both clips really play (decoded WebM, time advancing)
            assert page.text_content("#count") == f"{i} of 12 answered"
            pair = page.evaluate("() => document.body.dataset.pair")
            choice = "left" if i % 3 else "right"
            if i % 4 == 0:
                page.click(f"#{choice}")  # the video itself
            elif i % 4 == 2:
                page.click(f"#choose-{choice}")  # the button under it
            else:
                page.keyboard.press("ArrowLeft" if choice == "left" else "ArrowRight")
            answered[pair] = choice
            page.wait_for_function(f"() => document.body.dataset.pair !== '{pair}' || "
                                   "document.body.dataset.state === 'done'")
        page.wait_for_function("() => document.body.dataset.state === 'done'")
        assert "All 12 pairs are answered" in page.text_content("#done-text")
        page.reload()  # a finished rater stays finished
        page.wait_for_function("() => document.body.dataset.state === 'done'")
        browser.close()

    assert all(u.startswith(server.url) for u in urls), [u for u in urls if not u.startswith(server.url)]
    assert problems == []
    rows = read_answers(server.study.root / "answers.sqlite")
    assert sorted(r.pair for r in rows) == sorted(p.id for p in study.pairs)  # every pair, each once
    assert {r.pair: r.choice for r in rows} == answered and {r.rater for r in rows} == {"rater-1"}
    assert all(0 <= r.ms < 60_000 for r in rows)

    summary = report(server.study.root)
    chosen = [study.pair(pair).chosen(choice) for pair, choice in answered.items()]
    assert (summary["a_over_b"]["k"], summary["a_over_b"]["n"]) == (chosen.count("a"), 10)
    assert (summary["catch_failure"]["k"], summary["catch_failure"]["n"]) == (chosen.count("broken"), 2)
    assert summary["per_rater"][0]["answers"] == 12 and summary["answers"] == 12
