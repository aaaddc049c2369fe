"""A study's own file, STUDY/study.json: what each side is, which clips exist, and the pairs raters see.

Written once by `study create`, read by `serve` and `report`. Clip files have opaque names and pair ids are
plain numbers in a shuffled order, so nothing a rater's browser sees tells a real clip from a generated
one or a catch trial from a real trial; only this file (never served) holds the key.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data.decode import DataError
from ..media import write_json

STUDY_VERSION = 1
MANIFEST = "study.json"
DATABASE = "answers.sqlite"
QUESTION = "Which video is more realistic?"
FORMATS = ("webm", "mp4")  # what clips are written as, in the page's order of preference


@dataclass(frozen=True)
class Pair:
    id: str  # "p000", ...: the order of the list, which is shuffled, so ids say nothing
    kind: str  # "ab" (A against B) or "catch"
    left: str  # clip file names under STUDY/clips/, without extension (the page offers .webm, then .mp4)
    right: str
    left_is: str  # "a" | "b" for an ab pair, "real" | "broken" for a catch trial
    right_is: str
    broken: str = ""  # catch trials: how the broken clip was broken ("shuffled" or "frozen")

    def chosen(self, choice: str) -> str:
        """What a rater picked as more realistic: "left"/"right" -> "a", "b", "real" or "broken"."""
        return self.left_is if choice == "left" else self.right_is


@dataclass(frozen=True)
class Side:
    source: str  # as given: a data source or a run directory
    kind: str  # "data" or "run"
    label: str  # the name the report uses
    step: int | None = None  # runs: the checkpoint's step


@dataclass
class Study:
    a: Side
    b: Side
    real: Side  # where the catch trials' real clips came from
    frames: int
    size: int  # original clips are size x size; the page shows them upscaled
    upscale: int  # nearest neighbour
    fps: int
    seed: int
    pairs: list[Pair]
    question: str = QUESTION
    version: int = STUDY_VERSION
    formats: list[str] = field(default_factory=lambda: list(FORMATS))
    root: Path = Path(".")  # the study directory (not saved)

    def pair(self, pair_id: str) -> Pair | None:
        return self._by_id.get(pair_id)

    def __post_init__(self):
        self._by_id = {p.id: p for p in self.pairs}
        if len(self._by_id) != len(self.pairs):
            raise DataError(f"{self.root / MANIFEST}: pair ids are not unique")

    def clip_names(self) -> set[str]:
        return {name for p in self.pairs for name in (p.left, p.right)}

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "root"}


def save_study(study: Study, path: Path) -> None:
    write_json(path / MANIFEST, study.to_dict())


def load_study(path: str | Path) -> Study:
    """STUDY_DIR -> Study; a DataError names the file and the reason if it is not a study."""
    root = Path(path)
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise DataError(f"{root}: not a study directory (no {MANIFEST}; make one with `videogan study "
                        "create`)")
    try:
        d = json.loads(manifest.read_text())
        if d.get("version") != STUDY_VERSION:
            raise DataError(f"{manifest}: study version {d.get('version')!r}, this videogan reads "
                            f"{STUDY_VERSION}")
        sides = {k: Side(**d[k]) for k in ("a", "b", "real")}
        pairs = [Pair(**p) for p in d["pairs"]]
        rest = {k: d[k] for k in ("frames", "size", "upscale", "fps", "seed", "question", "version",
                                  "formats")}
    except (json.JSONDecodeError, RecursionError, KeyError, TypeError) as e:
        raise DataError(f"{manifest}: unreadable study file ({type(e).__name__}: {e})") from None
    for p in pairs:
        if {p.left_is, p.right_is} not in ({"a", "b"}, {"real", "broken"}):  # A against B, or a catch trial
            raise DataError(f"{manifest}: pair {p.id} compares {p.left_is!r} with {p.right_is!r}")
    if not rest["formats"] or not set(rest["formats"]) <= set(FORMATS):
        raise DataError(f"{manifest}: clip formats {rest['formats']!r}, expected some of {list(FORMATS)}")
    return Study(**sides, pairs=pairs, root=root, **rest)
