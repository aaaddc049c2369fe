import http.client
import json
import socket
import sqlite3
import threading

import pytest

from videogan.cli import make_parser
from videogan.config import ConfigError
from videogan.study.manifest import load_study
from videogan.study.server import MAX_BODY, StudyHandler, StudyServer, rater_order
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
        assert (r.rater == "r1" and r.choice == choices[r.pair]
                and r.chosen == study.pair(r.pair).chosen(r.choice))
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
    (b'{"rater": "r1", "pair": "CURRENT", "choice": "left", "ms": 1, "pad": "' + b"x" * MAX_BODY + b'"}', 413,
     "at most"),
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
    # e.g. a form on another site
    assert request(server, "POST", "/api/answer", good, content_type="text/plain")[0] == 415
    assert (request(server, "POST", "/api/answer", None, headers={"Content-Type": "application/json"})[0]
            == 411)
    assert request(server, "POST", "/api/other", good)[0] == 404
    assert request(server, "GET", "/api/next?rater=a%20b")[0] == 400
    assert read_answers(fresh_study / "answers.sqlite") == []
    assert request(server, "POST", "/api/answer", good)[0] == 200
    # the same answer again (a retried request)
    status, _, reply = request(server, "POST", "/api/answer", good)
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
    # so that answers.sqlite has content
    request(server, "POST", "/api/answer", json.dumps({"rater": "r1", "pair": current(server)["id"],
                                                       "choice": "left", "ms": 1}).encode())
    for path in ["/study.json", "/answers.sqlite", "/../study.json", "/clips/../study.json",
                 "/clips/%2e%2e/study.json", "/clips/%2E%2E/answers.sqlite", "/%2e%2e/%2e%2e/etc/passwd",
                 "/etc/passwd", "//etc/passwd", "/clips/..%2fstudy.json",
                 f"/clips/{name}.webm/../../study.json", f"/clips/original/{name}.mp4", f"/clips/{name}",
                 f"/clips/{name}.WEBM", "/clips/", "/clips", "http://127.0.0.1/../study.json", "/page.html",
                 "/..", "/.", f"/clips/./{name}.webm", "/clips/%00"]:
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


def raw_request(srv, data: bytes, half_close=False) -> tuple[int, dict, dict]:
    """Send bytes as they are; (status, headers, JSON body) of the reply."""
    with socket.create_connection(srv.server_address[:2], timeout=10) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, json.loads(body)


def post_bytes(body: bytes, length: bytes | None = None) -> bytes:
    length = str(len(body)).encode() if length is None else length
    return (b"POST /api/answer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + length + b"\r\n\r\n" + body)


@pytest.mark.parametrize("data,status,message", [
    (post_bytes(b"[" * 1000 + b"]" * 1000), 400, "not JSON"),  # nested past the recursion limit
    (post_bytes(b"[" * MAX_BODY), 400, "not JSON"),
    (post_bytes(b"{}", length="\N{SUPERSCRIPT TWO}".encode("latin-1")), 400, "bad Content-Length"),
    (post_bytes(b"{}", length=b"-2"), 400, "bad Content-Length"),
    (post_bytes(b"{}", length=b"9" * 5000), 413, "at most"),  # int() refuses over 4,300 digits
    (post_bytes(b"{}", length=b"0002"), 400, "exactly the fields"),  # leading zeros are still a length
    (post_bytes(b"{}", length=b"2\r\nContent-Length: 3"), 400, "bad Content-Length"),
    (b"NOT A REQUEST LINE\r\n\r\n", 400, "Bad request"),
    (b"GET / HTTP/9.1\r\n\r\n", 505, "Invalid HTTP version"),
    (b"BREW /api/answer HTTP/1.1\r\n\r\n", 501, "Unsupported method"),
])
def test_malformed_requests_get_a_json_error_and_no_traceback(server, fresh_study, capsys, data, status,
                                                                message):
    before = current(server)
    got, headers, reply = raw_request(server, data)
    assert got == status and message in reply["error"] and headers["Content-Type"] == "application/json"
    assert "Traceback" not in capsys.readouterr().err
    assert read_answers(fresh_study / "answers.sqlite") == [] and current(server) == before


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_other_methods_get_405_with_allow(server, method):
    status, headers, reply = raw_request(server, f"{method} /api/answer HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status == 405 and headers["Allow"] == "GET, HEAD, POST" and method in reply["error"]


def test_a_body_shorter_than_its_length_does_not_hold_a_thread(server, fresh_study, monkeypatch):
    monkeypatch.setattr(StudyHandler, "timeout", 0.2)  # read when a connection is accepted
    status, _, reply = raw_request(server, post_bytes(b"{", length=b"100"))  # and then nothing more
    assert status == 408 and "did not arrive" in reply["error"]
    status, _, reply = raw_request(server, post_bytes(b"{", length=b"100"), half_close=True)
    assert status == 400 and "ended after 1 of 100 bytes" in reply["error"]
    assert read_answers(fresh_study / "answers.sqlite") == []
    assert current(server) is not None


def test_raters_arriving_together_are_all_accepted_and_answered(fresh_study):
    """36 raters connect before the server accepts anyone: all must be queued, then answered."""
    study = load_study(fresh_study)
    srv = StudyServer(fresh_study, "127.0.0.1", 0)  # listening, not yet serving
    raters = [f"rater{i}" for i in range(36)]
    clients = []
    serving = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    try:
        for rater in raters:  # a connection the kernel could not queue would time out here
            clients.append(socket.create_connection(srv.server_address[:2], timeout=5))
            first = rater_order(study.pairs, study.seed, rater)[0]
            clients[-1].sendall(post_bytes(json.dumps({"rater": rater, "pair": first.id, "choice": "left",
                                                       "ms": 5}).encode()))
        serving.start()
        for client in clients:
            client.settimeout(30)  # the answers are committed one at a time
            reply = b""
            while chunk := client.recv(65536):
                reply += chunk
            assert reply.startswith(b"HTTP/1.0 200 ") and reply.endswith(b'{"answered": 1, "total": 6}')
    finally:
        for client in clients:
            client.close()
        if serving.is_alive():
            srv.shutdown()
        srv.server_close()
    stored = read_answers(fresh_study / "answers.sqlite")
    assert sorted((a.rater, a.pair) for a in stored) == sorted(
        (r, rater_order(study.pairs, study.seed, r)[0].id) for r in raters)


def test_an_answer_the_database_cannot_take_is_a_503_and_not_counted(server, fresh_study, monkeypatch):
    def disk_full(answer):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(server.store, "add", disk_full)
    before = current(server)
    status, reply = post_answer(server, rater="r1", pair=before["id"], choice="left", ms=1)
    assert status == 503 and "not saved (database or disk is full)" in reply["error"]
    assert current(server) == before and read_answers(fresh_study / "answers.sqlite") == []


def test_a_client_that_went_away_is_logged_in_a_line(fresh_study, capsys):
    srv = StudyServer(fresh_study, "127.0.0.1", 0, quiet=False)
    try:
        for error in (BrokenPipeError(32, "Broken pipe"), TimeoutError("timed out")):
            try:
                raise error
            except OSError:
                srv.handle_error(None, ("127.0.0.1", 5555))
    finally:
        srv.server_close()
    assert capsys.readouterr().err.splitlines() == ["127.0.0.1: connection dropped ([Errno 32] Broken pipe)",
                                                    "127.0.0.1: connection dropped (timed out)"]
