"""`videogan study serve`: the study page and its small JSON API, on the standard library's HTTP server.

    GET  /                     the page (page.html: inline CSS and JS, nothing external)
    GET  /api/next?rater=ID    {"question", "total", "answered", "pair": {"id", "left", "right"}
                               or null when done}
    POST /api/answer           {"rater", "pair", "choice": "left"|"right", "ms"} -> committed,
                               then {"answered", "total"}
    GET  /clips/NAME.webm|mp4  a clip of this study

Only those paths exist: clip URLs are looked up in a table built from study.json, never joined onto a
folder, so `..`, `%2e%2e` or absolute paths cannot reach any other file (study.json and the database
included). Each rater sees every pair once, in an order of their own (seeded by the study's seed and the
rater id, so a reload shows the same next pair), one at a time: the server accepts an answer only to the
pair it is showing that rater. A malformed answer gets a 4xx and changes nothing; so does any malformed
request (every error is a JSON {"error": ...}; other methods get 405), and a client that stops sending is
dropped after REQUEST_TIMEOUT seconds rather than holding a thread.
"""
from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..config import ConfigError
from .manifest import DATABASE, Pair, Study, load_study
from .store import BAD_RATER_ID, RATER_ID, Answer, AnswerStore, DuplicateAnswer

MAX_BODY = 2048  # bytes: an answer is ~100
MAX_MS = 24 * 3600 * 1000  # a day: longer "time taken" is not a real answer
REQUEST_TIMEOUT = 30  # seconds a connection may go without sending or taking a byte
LISTEN_BACKLOG = 256  # connections the kernel holds until accepted: a class of raters starting at once
ALLOWED_METHODS = "GET, HEAD, POST"
CONTENT_TYPES = {"webm": "video/webm", "mp4": "video/mp4"}
# The page may load nothing from elsewhere (the machine may be offline; raters' answers stay here).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                               "media-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri "
                               "'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class BadRequest(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def rater_order(pairs: list[Pair], seed: int, rater: str) -> list[Pair]:
    """The order this rater sees the pairs in: a permutation of their own, the same on every request."""
    key = int.from_bytes(hashlib.sha256(f"{seed}|{rater}".encode()).digest()[:8], "big")
    order = list(pairs)
    random.Random(key).shuffle(order)
    return order


def next_pair(study: Study, rater: str, answered: set[str]) -> Pair | None:
    return next((p for p in rater_order(study.pairs, study.seed, rater) if p.id not in answered), None)


def content_length(values: list[str]) -> int:
    """The body's size from the request's Content-Length headers, or BadRequest. Only ASCII digits (isdigit
    and int() also take '²' or '٣'), judged by their count first (int() refuses over 4,300 of them)."""
    if not values:
        raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
    if len(set(values)) > 1 or not (values[0].isascii() and values[0].isdigit()):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "bad Content-Length")
    digits = values[0].lstrip("0") or "0"
    if len(digits) > len(str(MAX_BODY)) or int(digits) > MAX_BODY:
        raise BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"an answer is at most {MAX_BODY} bytes")
    return int(digits)


def parse_answer(body: bytes, study: Study) -> tuple[str, Pair, str, int]:
    """A POSTed answer -> (rater, pair, choice, ms), or BadRequest saying what is wrong with it."""
    try:
        d = json.loads(body)
    except (ValueError, RecursionError):  # not JSON or not UTF-8, or nested too deep: [[[[...]]]]
        raise BadRequest(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
    if not isinstance(d, dict) or set(d) != {"rater", "pair", "choice", "ms"}:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "expected exactly the fields rater, pair, choice, ms")
    rater, pair_id, choice, ms = d["rater"], d["pair"], d["choice"], d["ms"]
    if not isinstance(rater, str) or not RATER_ID.fullmatch(rater):
        raise BadRequest(HTTPStatus.BAD_REQUEST, BAD_RATER_ID)
    pair = study.pair(pair_id) if isinstance(pair_id, str) else None
    if pair is None:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "unknown pair")
    if choice not in ("left", "right"):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "choice must be 'left' or 'right'")
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not 0 <= ms <= MAX_MS:
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"ms must be a number of milliseconds in [0, {MAX_MS}]")
    return rater, pair, choice, round(ms)


class StudyServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG  # the default, 5, had the kernel drop raters' connections under load

    def __init__(self, study_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, quiet: bool = True):
        self.study = load_study(study_dir)
        self.page = resources.files("videogan.study").joinpath("page.html").read_bytes()
        clips = self.study.root / "clips"
        self.files = {f"/clips/{name}.{ext}": clips / f"{name}.{ext}" for name in self.study.clip_names()
                      for ext in self.study.formats}
        missing = [str(p) for p in self.files.values() if not p.is_file()]
        if missing:
            raise ConfigError(f"{study_dir}: {len(missing)} clip files are missing, e.g. {missing[0]}")
        self.quiet = quiet
        self.store = AnswerStore(self.study.root / DATABASE)
        try:
            super().__init__((host, port), StudyHandler)
        except OSError as e:
            self.store.close()
            raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def server_close(self) -> None:
        super().server_close()
        self.store.close()

    def handle_error(self, request, client_address) -> None:
        """A client that went away or stalled is logged in a line; anything else keeps its traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            if not self.quiet:
                print(f"{client_address[0]}: connection dropped ({error})", file=sys.stderr)
        else:
            super().handle_error(request, client_address)

    def progress(self, rater: str) -> dict:
        answered = self.store.answered(rater)
        pair = next_pair(self.study, rater, answered)
        shown = None if pair is None else {"id": pair.id, "left": pair.left, "right": pair.right}
        return {"question": self.study.question, "formats": self.study.formats,
                "total": len(self.study.pairs), "answered": len(answered), "pair": shown}

    def answer(self, body: bytes) -> dict:
        rater, pair, choice, ms = parse_answer(body, self.study)
        # a racing request for the same pair loses at the UNIQUE constraint
        answered = self.store.answered(rater)
        if pair.id in answered:
            raise BadRequest(HTTPStatus.CONFLICT, f"pair {pair.id} is already answered by {rater}")
        expected = next_pair(self.study, rater, answered)
        if expected is None or expected.id != pair.id:
            raise BadRequest(HTTPStatus.CONFLICT, f"pair {pair.id} is not the pair being shown to {rater}")
        try:
            self.store.add(Answer(rater, pair.id, choice, pair.chosen(choice), ms))
        except DuplicateAnswer as e:  # two tabs racing: the first one counted
            raise BadRequest(HTTPStatus.CONFLICT, str(e)) from None
        return {"answered": len(answered) + 1, "total": len(self.study.pairs)}


class StudyHandler(BaseHTTPRequestHandler):
    server: StudyServer
    server_version = "videogan-study"
    sys_version = ""
    timeout = REQUEST_TIMEOUT  # set on each connection's socket: a short body cannot hold a thread forever

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        if not self.server.quiet:
            super().log_message(format, *args)

    def send(self, status: HTTPStatus, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: HTTPStatus, data: dict) -> None:
        self.send(status, json.dumps(data).encode(), "application/json")

    def send_error_json(self, status: HTTPStatus, message: str, extra: dict | None = None) -> None:
        self.send(status, json.dumps({"error": message}).encode(), "application/json", extra)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's own errors (bad request line or headers, unknown method) as JSON, as the API's."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # or an unparsable request line: still send a status line
            self.request_version = "HTTP/1.0"
        self.send_error_json(HTTPStatus(code), message or HTTPStatus(code).phrase)

    def method_not_allowed(self) -> None:
        self.close_connection = True  # a body, if any, is left unread
        self.send_error_json(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not allowed here",
                             {"Allow": ALLOWED_METHODS})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = method_not_allowed

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path in ("/", "/index.html"):
            self.send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
        elif url.path == "/api/next":
            rater = parse_qs(url.query).get("rater", [""])[0]
            if not RATER_ID.fullmatch(rater):
                self.send_error_json(HTTPStatus.BAD_REQUEST, BAD_RATER_ID)
            else:
                self.send_json(HTTPStatus.OK, self.server.progress(rater))
        elif url.path in self.server.files:
            self.send_file(self.server.files[url.path])
        else:
            self.send_error_json(HTTPStatus.NOT_FOUND, "not found")

    do_HEAD = do_GET

    def send_file(self, path: Path) -> None:
        """The whole file, or the one byte range asked for (media elements ask for ranges to seek and
        loop)."""
        data = path.read_bytes()
        content_type = CONTENT_TYPES[path.suffix[1:]]
        byte_range = self.headers.get("Range", "")
        if byte_range.startswith("bytes=") and "," not in byte_range:
            first, _, last = byte_range[6:].partition("-")
            try:
                start, end = ((int(first), int(last) if last else len(data) - 1) if first
                              else (len(data) - int(last), len(data) - 1))
            except ValueError:
                start, end = -1, -1
            if not 0 <= start <= end or start >= len(data):
                self.send(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, b"", content_type,
                          {"Content-Range": f"bytes */{len(data)}"})
                return
            end = min(end, len(data) - 1)
            self.send(HTTPStatus.PARTIAL_CONTENT, data[start : end + 1], content_type,
                      {"Content-Range": f"bytes {start}-{end}/{len(data)}", "Accept-Ranges": "bytes",
                       "Cache-Control": "max-age=3600"})
            return
        self.send(HTTPStatus.OK, data, content_type,
                  {"Accept-Ranges": "bytes", "Cache-Control": "max-age=3600"})

    def do_POST(self) -> None:
        try:
            if urlsplit(self.path).path != "/api/answer":
                raise BadRequest(HTTPStatus.NOT_FOUND, "not found")
            body = self.read_body()
            self.send_json(HTTPStatus.OK, self.server.answer(body))
        except BadRequest as e:
            self.send_error_json(e.status, str(e))
        except sqlite3.Error as e:  # e.g. a full disk, or the database locked elsewhere: not saved, so say so
            self.log_error("answer not saved: %s", e)
            self.send_error_json(HTTPStatus.SERVICE_UNAVAILABLE, f"the answer was not saved ({e}); try again")

    def read_body(self) -> bytes:
        """The request body, refusing before reading it anything too large, unsized, or not JSON. Requiring
        application/json also keeps other web sites out: a cross-origin JSON POST needs a CORS preflight,
        which this server never grants."""
        try:
            if self.headers.get("Content-Type", "").split(";")[0].strip().lower() != "application/json":
                raise BadRequest(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "expected Content-Type: application/json")
            length = content_length(self.headers.get_all("Content-Length", []))
            try:
                body = self.rfile.read(length)
            except TimeoutError:
                raise BadRequest(HTTPStatus.REQUEST_TIMEOUT,
                                 f"the body did not arrive within {self.timeout} s") from None
            if len(body) < length:
                raise BadRequest(HTTPStatus.BAD_REQUEST,
                                 f"the body ended after {len(body)} of {length} bytes")
            return body
        except BadRequest:
            self.close_connection = True  # an unread body must not be taken for the next request
            raise


def serve(study_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False) -> None:
    """Serve until interrupted (Ctrl-C)."""
    server = StudyServer(study_dir, host, port, quiet=quiet)
    study = server.study
    print(f"study: {len(study.pairs)} pairs, {study.a.label} against {study.b.label}; answers go to "
          f"{study.root / DATABASE}")
    print(f"open {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
