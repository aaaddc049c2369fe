import http.client
import json

import pytest

from videogan.cli import make_parser
from videogan.config import ConfigError
from videogan.study.manifest import load_study
from videogan.study.server import MAX_BODY, StudyServer, rater_order
from videogan.study.store import read_answers


@pytest.fixture
def server(serving, fresh_study):
    return serving(fresh_study)


def request(srv, method, path, body=None, headers=None, content_type="application/json"):
    """(status, headers, body bytes); the path is sent exactly as given (no normalisation)."""
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=10)
    conn.putrequest(method, path, skip_accept_encoding=True)
    if body is not None:
        if content_type:
            conn.putheader("Content-Type", content_type)
        conn.putheader("Content-Length", str(len(body)))
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.endheaders(body)
    response = conn.getresponse()
    out = response.status, dict(response.getheaders()), response.read()
    conn.close()
    return out


def get_json(srv, path):
    status, _, body = request(srv, "GET", path)
    return status, json.loads(body)


def post_answer(srv, **fields):
    status, _, body = request(srv, "POST", "/api/answer", json.dumps(fields).encode())
    return status, json.loads(body)


def current(srv, rater="r1"):
    return get_json(srv, f"/api/next?rater={rater}")[1]["pair"]


def test_page_is_self_contained(server):
    status, headers, body = request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    page = body.decode()
    assert "Which video is more realistic?" in page and "ArrowLeft" in page and "ArrowRight" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch from elsewhere
    assert "default-src 'none'" in headers["Content-Security-Policy"]


def test_a_rater_answers_every_pair_once_in_their_own_stable_order(server, fresh_study):
    study = load_study(fresh_study)
    status, first = get_json(server, "/api/next?rater=r1")
    assert status == 200 and (first["answered"], first["total"]) == (0, len(study.pairs))
    assert first["question"] == "Which video is more realistic?" and first["formats"] == ["webm", "mp4"]
    assert current(server) == first["pair"]  # a reload shows the same pair
    seen, choices = [], {}
    while (pair := current(server)) is not None:
        choice = "left" if len(seen) % 3 else "right"
        status, reply = post_answer(server, rater="r1", pair=pair["id"], choice=choice, ms=700 + len(seen))
        assert status == 200 and reply == {"answered": len(seen) + 1, "total": len(study.pairs)}
        seen.append(pair["id"])
        choices[pair["id"]] = choice
        assert len(read_answers(fresh_study / "answers.sqlite")) == len(seen)  # committed before the reply
    assert sorted(seen) == sorted(p.id for p in study.pairs)
    assert seen == [p.id for p in rater_order(study.pairs, study.seed, "r1")]
    rows = read_answers(fresh_study / "answers.sqlite")
    assert [r.pair for r in rows] == seen
    for r in rows:
        assert r.rater == "r1" and r.choice == choices[r.pair] and r.chosen == study.pair(r.pair).chosen(r.choice)
    assert get_json(server, "/api/next?rater=r1")[1]["answered"] == len(study.pairs)
    assert current(server, "r2") is not None  # another rater starts from scratch


def test_raters_get_different_orders(data_study):
    study = load_study(data_study)
    orders = {tuple(p.id for p in rater_order(study.pairs, study.seed, f"rater{i}")) for i in range(6)}
    assert len(orders) > 1 and all(sorted(o) == sorted(p.id for p in study.pairs) for o in orders)


@pytest.mark.parametrize("body,status,message", [
    (b"{not json", 400, "not JSON"),
    (b"[1, 2]", 400, "exactly the fields"),
    (b'{"rater": "r1", "pair": "p000", "choice": "left"}', 400, "exactly the fields"),
    (b'{"rater": "r1", "pair": "p000", "choice": "left", "ms": 1, "extra": 1}', 400, "exactly the fields"),
    (b'{"rater": "r1", "pair": "p999", "choice": "left", "ms": 1}', 400, "unknown pair"),
    (b'{"rater": "r1", "pair": 3, "choice": "left", "ms": 1}', 400, "unknown pair"),
    (b'{"rater": "r 1", "pair": "CURRENT", "choice": "left", "ms": 1}', 400, "bad rater id"),
    (b'{"rater": "", "pair": "CURRENT", "choice": "left", "ms": 1}', 400, "bad rater id"),
    (b'{"rater": "r1", "pair": "CURRENT", "choice": "up", "ms": 1}', 400, "choice must be"),
    (b'{"rater": "r1", "pair": "CURRENT", "choice": "left", "ms": -5}', 400, "ms must be"),
    (b'{"rater": "r1", "pair": "CURRENT", "choice": "left", "ms": "fast"}', 400, "ms must be"),
    (b'{"rater": "r1", "pair": "CURRENT", "choice": "left", "ms": true}', 400, "ms must be"),
    (b'{"rater": "r1", "pair": "OTHER", "choice": "left", "ms": 1}', 409, "not the pair being shown"),
    (b'{"rater": "r1", "pair": "CURRENT", "choice": "left", "ms": 1, "pad": "' + b"x" * MAX_BODY + b'"}', 413, "at most"),
    (b"\xff\xfe", 400, "not JSON"),
])
def test_malformed_answers_get_4xx_and_change_nothing(server, fresh_study, body, status, message):
    study = load_study(fresh_study)
    before = current(server)
    other = next(p.id for p in study.pairs if p.id != before["id"])
    body = body.replace(b"CURRENT", before["id"].encode()).replace(b"OTHER", other.encode())
    got, _, reply = request(server, "POST", "/api/answer", body)
    assert got == status and message in json.loads(reply)["error"]
    assert read_answers(fresh_study / "answers.sqlite") == [] and current(server) == before


def test_wrong_content_type_missing_length_wrong_path_and_duplicates(server, fresh_study):
    pair = current(server)
    good = json.dumps({"rater": "r1", "pair": pair["id"], "choice": "left", "ms": 10}).encode()
    assert request(server, "POST", "/api/answer", good, content_type="text/plain")[0] == 415  # e.g. a form on another site
    assert request(server, "POST", "/api/answer", None, headers={"Content-Type": "application/json"})[0] == 411
    assert request(server, "POST", "/api/other", good)[0] == 404
    assert request(server, "GET", "/api/next?rater=a%20b")[0] == 400
    assert read_answers(fresh_study / "answers.sqlite") == []
    assert request(server, "POST", "/api/answer", good)[0] == 200
    status, _, reply = request(server, "POST", "/api/answer", good)  # the same answer again (a retried request)
    assert status == 409 and "already answered" in json.loads(reply)["error"]
    assert len(read_answers(fresh_study / "answers.sqlite")) == 1


def test_serves_the_study_clips_and_nothing_else(server, fresh_study):
    study = load_study(fresh_study)
    name = study.pairs[0].left
    status, headers, body = request(server, "GET", f"/clips/{name}.webm")
    assert status == 200 and headers["Content-Type"] == "video/webm"
    assert body == (fresh_study / "clips" / f"{name}.webm").read_bytes()
    status, headers, part = request(server, "GET", f"/clips/{name}.mp4", headers={"Range": "bytes=4-11"})
    whole = (fresh_study / "clips" / f"{name}.mp4").read_bytes()
    assert status == 206 and part == whole[4:12] and headers["Content-Range"] == f"bytes 4-11/{len(whole)}"
    assert request(server, "GET", f"/clips/{name}.mp4", headers={"Range": "bytes=99999-"})[0] == 416
    secrets = [(fresh_study / "study.json").read_bytes()[:40], b"SQLite format"]
    request(server, "POST", "/api/answer", json.dumps({"rater": "r1", "pair": current(server)["id"], "choice": "left",
                                                       "ms": 1}).encode())  # so that answers.sqlite has content
    for path in ["/study.json", "/answers.sqlite", "/../study.json", "/clips/../study.json", "/clips/%2e%2e/study.json",
                 "/clips/%2E%2E/answers.sqlite", "/%2e%2e/%2e%2e/etc/passwd", "/etc/passwd", "//etc/passwd",
                 "/clips/..%2fstudy.json", f"/clips/{name}.webm/../../study.json", f"/clips/original/{name}.mp4",
                 f"/clips/{name}", f"/clips/{name}.WEBM", "/clips/", "/clips", "http://127.0.0.1/../study.json",
                 "/page.html", "/..", "/.", f"/clips/./{name}.webm", "/clips/%00"]:
        status, _, body = request(server, "GET", path)
        assert status == 404, path
        assert not any(s in body for s in secrets), path


def test_binds_loopback_by_default_and_refuses_a_busy_port_or_missing_clips(server, fresh_study, tmp_path):
    args = make_parser().parse_args(["study", "serve", str(fresh_study)])
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    with pytest.raises(ConfigError, match="cannot listen on 127.0.0.1"):
        StudyServer(fresh_study, "127.0.0.1", server.server_address[1])
    study = load_study(fresh_study)
    (fresh_study / "clips" / f"{study.pairs[0].right}.mp4").unlink()
    with pytest.raises(ConfigError, match="1 clip files are missing"):
        StudyServer(fresh_study, "127.0.0.1", 0)
