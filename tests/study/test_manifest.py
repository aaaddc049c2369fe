import json

import pytest

from videogan.data.decode import DataError
from videogan.study.manifest import load_study, save_study


def test_round_trip(data_study, tmp_path):
    study = load_study(data_study)
    save_study(study, tmp_path)
    again = load_study(tmp_path)
    assert again.to_dict() == study.to_dict() and again.root == tmp_path
    assert again.pair(study.pairs[0].id) == study.pairs[0] and again.pair("nope") is None


@pytest.mark.parametrize("change,message", [
    (lambda d: d.update(version=99), "study version 99"),
    (lambda d: d.pop("pairs"), "unreadable study file"),
    (lambda d: d["pairs"][0].update(left_is="real"), "compares 'real' with"),
    (lambda d: d["pairs"][1].update(id=d["pairs"][0]["id"]), "pair ids are not unique"),
    (lambda d: d.update(formats=["gif"]), r"clip formats \['gif'\]"),
    (lambda d: d["pairs"][0].update(extra=1), "unreadable study file"),
])
def test_bad_study_files_are_clear_errors(data_study, tmp_path, change, message):
    d = json.loads((data_study / "study.json").read_text())
    change(d)
    (tmp_path / "study.json").write_text(json.dumps(d))
    with pytest.raises(DataError, match=message):
        load_study(tmp_path)


def test_not_a_study(tmp_path):
    with pytest.raises(DataError, match="not a study directory"):
        load_study(tmp_path)
    (tmp_path / "study.json").write_text("{oops")
    with pytest.raises(DataError, match="study.json: unreadable study file"):
        load_study(tmp_path)
