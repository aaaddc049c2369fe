"""`videogan study report`: what the raters said, with the uncertainty of a share of trials.

The paper reports "percentage of trials" in which one model's video was preferred over the other's (e.g.
two-stream over real 18%), pooling all workers' trials. We pool the same way, and give a 95% Wilson score
interval (better than the normal approximation near 0% and 100% and for small n). Trials are not fully
independent (one rater answers many), so the interval is a little optimistic; per-rater counts are
reported so this can be checked. Catch trials (a real clip against a broken copy of itself) measure
inattention: a rater who picks the broken clip even once is "failed" and, with --exclude-failed-catch, left
out of the A-against-B share (the paper screened workers who often called real videos unrealistic).
"""
from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..data.decode import DataError
from ..media import atomic_path, write_json
from .manifest import DATABASE, Study, load_study
from .store import Answer, read_answers

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n; (0, 1) when n is 0."""
    assert 0 <= k <= n, f"k={k}, n={n}"
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Share:
    k: int  # trials preferring ...
    n: int  # ... out of
    share: float | None  # k / n (None when n is 0)
    ci95: list[float]  # [low, high]

    @classmethod
    def of(cls, k: int, n: int) -> Share:
        return cls(k, n, k / n if n else None, list(wilson_interval(k, n)))


@dataclass(frozen=True)
class RaterCounts:
    rater: str
    answers: int
    ab_trials: int
    chose_a: int
    catch_trials: int
    catch_failed: int
    median_ms: float
    excluded: bool


def rater_counts(study: Study, answers: list[Answer], exclude_failed_catch: bool) -> list[RaterCounts]:
    by_rater: dict[str, list[Answer]] = defaultdict(list)
    for a in answers:
        by_rater[a.rater].append(a)
    out = []
    for rater, mine in sorted(by_rater.items()):
        kinds = [study.pair(a.pair).kind for a in mine]
        failed = sum(k == "catch" and a.chosen == "broken" for a, k in zip(mine, kinds, strict=True))
        out.append(RaterCounts(rater=rater, answers=len(mine), ab_trials=kinds.count("ab"),
                               chose_a=sum(a.chosen == "a" for a in mine), catch_trials=kinds.count("catch"),
                               catch_failed=failed, median_ms=float(statistics.median(a.ms for a in mine)),
                               excluded=exclude_failed_catch and failed > 0))
    return out


def summarize(study: Study, answers: list[Answer], exclude_failed_catch: bool = False) -> dict:
    """The numbers of the report, from the study and its answers."""
    for a in answers:
        if study.pair(a.pair) is None:
            raise DataError(f"{study.root / DATABASE}: answer to pair {a.pair!r}, which this study does not "
                            "have")
    raters = rater_counts(study, answers, exclude_failed_catch)
    excluded = {r.rater for r in raters if r.excluded}
    kept_ab = [a for a in answers if study.pair(a.pair).kind == "ab" and a.rater not in excluded]
    catch = [(a, study.pair(a.pair).broken) for a in answers if study.pair(a.pair).kind == "catch"]
    by_kind = {kind: Share.of(sum(a.chosen == "broken" for a, k in catch if k == kind),
                              sum(k == kind for _, k in catch))
               for kind in sorted({k for _, k in catch})}
    return {
        "question": study.question,
        "a": asdict(study.a), "b": asdict(study.b),
        "a_over_b": asdict(Share.of(sum(a.chosen == "a" for a in kept_ab), len(kept_ab))),
        "catch_failure": asdict(Share.of(sum(a.chosen == "broken" for a, _ in catch),
                                         len(catch))),  # all raters
        "catch_failure_by_kind": {k: asdict(v) for k, v in by_kind.items()},
        "raters": len(raters), "raters_failed_catch": sum(r.catch_failed > 0 for r in raters),
        "exclude_failed_catch": exclude_failed_catch, "excluded_raters": sorted(excluded),
        "answers": len(answers), "pairs": len(study.pairs),
        "per_rater": [asdict(r) for r in raters],
    }


# ----------------------------------------------------------------------------- files

def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def answer_rows(study: Study, answers: list[Answer], excluded: set[str]) -> list[list]:
    rows = []
    for a in answers:
        p = study.pair(a.pair)
        rows.append([a.rater, a.pair, p.kind, p.broken, p.left_is, p.right_is, a.choice, a.chosen, a.ms,
                     a.answered_at, int(a.rater in excluded)])
    return rows


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable built-in font
    except TypeError:
        return ImageFont.load_default()


def percent(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def draw_chart(summary: dict, path: Path) -> None:
    """A bar per row in the style of the paper's table ("percentage of trials ... preferred"): the share,
    its 95% interval as a whisker, chance (50%) as a dashed line; catch-trial failures in grey below."""
    rows = [(f"{summary['a']['label']} preferred over {summary['b']['label']}", summary["a_over_b"],
             (70, 120, 180)),
            ("catch trials failed (broken clip preferred)", summary["catch_failure"], (150, 150, 150))]
    width, left, right, top, row_h = 760, 30, 30, 70, 90
    height = top + row_h * len(rows) + 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    title, text, small = _font(20), _font(16), _font(13)
    draw.text((left, 18), summary["question"], fill="black", font=title)
    excluded = (f", {len(summary['excluded_raters'])} excluded for failing a catch trial"
                if summary["exclude_failed_catch"] else "")
    draw.text((left, 44), f"{summary['raters']} raters, {summary['answers']} answers{excluded}",
              fill=(90, 90, 90), font=small)
    x0, x1 = left, width - right
    scale = lambda v: x0 + (x1 - x0) * v  # noqa: E731 (share -> x)
    for i, (label, s, colour) in enumerate(rows):
        y = top + i * row_h
        draw.text((x0, y), f"{label}: {percent(s['share'])} [{percent(s['ci95'][0])}, "
                           f"{percent(s['ci95'][1])}], {s['k']} of {s['n']}", fill="black", font=text)
        bar_top, bar_bottom = y + 28, y + 58
        draw.rectangle([x0, bar_top, x1, bar_bottom], outline=(200, 200, 200), fill=(245, 245, 245))
        if s["share"] is not None:
            draw.rectangle([x0, bar_top, scale(s["share"]), bar_bottom], fill=colour)
        low, high = (scale(v) for v in s["ci95"])
        mid = (bar_top + bar_bottom) // 2
        draw.line([low, mid, high, mid], fill="black", width=2)
        for x in (low, high):
            draw.line([x, bar_top + 6, x, bar_bottom - 6], fill="black", width=2)
        for yy in range(bar_top - 4, bar_bottom + 4, 6):  # chance
            draw.line([scale(0.5), yy, scale(0.5), yy + 3], fill=(200, 40, 40), width=1)
    axis_y = top + row_h * len(rows)
    for v in (0, 0.25, 0.5, 0.75, 1):
        draw.text((scale(v) - 12, axis_y - 20), f"{int(v * 100)}%", fill=(90, 90, 90), font=small)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def report(study_dir: str | Path, out: str | Path | None = None, exclude_failed_catch: bool = False) -> dict:
    """Write summary.json, answers.csv, raters.csv and chart.png to `out` (default STUDY/report/); return the
    summary."""
    study = load_study(study_dir)
    answers = read_answers(study.root / DATABASE)
    if not answers:
        raise DataError(f"{study.root}: no answers yet (serve the study with `videogan study serve "
                        f"{study_dir}`)")
    summary = summarize(study, answers, exclude_failed_catch)
    out = Path(out) if out is not None else study.root / "report"
    excluded = set(summary["excluded_raters"])
    write_csv(out / "answers.csv", ["rater", "pair", "kind", "broken", "left_is", "right_is", "choice",
                                    "chosen", "ms", "answered_at", "excluded"],
              answer_rows(study, answers, excluded))
    write_csv(out / "raters.csv", list(RaterCounts.__dataclass_fields__),
              [list(r.values()) for r in summary["per_rater"]])
    draw_chart(summary, out / "chart.png")
    summary["files"] = {name: str(out / name) for name in ("summary.json", "answers.csv", "raters.csv",
                                                           "chart.png")}
    write_json(out / "summary.json", summary)
    return summary
