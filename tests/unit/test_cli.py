"""The `engagement` command line: help, examples, --version, and the parsing and error paths of
`emit` and `snapshot` that need no Kafka (their Kafka/worker paths: tests/integration)."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest

from engagement_cli import client
from engagement_cli.cli import COMMANDS, build_parser, main
from engagement_cli.cmd_snapshot import SECTIONS, render_table


def test_help_lists_every_command_on_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name, (_, help_line) in COMMANDS.items():
        assert help_line and "\n" not in help_line
        matching = [ln for ln in lines if ln.split()[:1] == [name]]
        assert len(matching) == 1, f"{name} is not listed once"
        assert " ".join(matching[0].split()[1:]) == help_line, (
            f"{name}: its help must fit one line of 80 columns (58 characters)"
        )
    assert "exit codes:" in out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_examples_in_its_help(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser(name).parse_args([name, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text, f"engagement {name} --help has no examples"
    examples = text.split("examples:", 1)[1]
    assert f"engagement {name}" in examples, f"no `engagement {name} ...` example"
    assert "exit codes:" in text
    module = importlib.import_module(COMMANDS[name][0])
    assert callable(module.add_arguments) and callable(module.run)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    expected = importlib.metadata.version("engagement-metrics")
    assert capsys.readouterr().out.strip() == f"engagement {expected}"


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


# ---- engagement emit: everything before Kafka ----------------------------------------------


def emit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(["emit", *args])
    except SystemExit as exc:  # argparse errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_emit_dry_run_builds_the_record(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = emit(
        capsys, "purchase", "--user", "u-42", "--account", "acme", "--id", "e-1",
        "--prop", "order_id=o-1", "--prop", "amount=19.9", "--prop-str", "coupon=10",
        "--ts", "2026-11-20T10:00:00Z", "--record-ts", "2026-11-20T10:00:01Z", "--dry-run",
    )  # fmt: skip
    assert code == 0
    value = json.loads(out.splitlines()[0])
    assert value == {
        "event_id": "e-1", "type": "purchase", "user_id": "u-42", "ts": "2026-11-20T10:00:00Z",
        "account_id": "acme", "props": {"order_id": "o-1", "amount": 19.9, "coupon": "10"},
    }  # fmt: skip
    assert "valid for product-events (key u-42)" in out


def test_emit_survey_and_epoch_ts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = emit(
        capsys, "nps", "--user", "u-1", "--score", "9", "--touchpoint", "support",
        "--ts", "1795168800000", "--record-ts", "1795168800000", "--dry-run", "--prefix", "t.",
    )  # fmt: skip
    assert code == 0
    value = json.loads(out.splitlines()[0])
    assert (value["survey"], value["score"], value["ts"], value["touchpoint"]) == (
        "nps", 9, 1795168800000, "support",
    )  # fmt: skip
    assert "valid for t.survey-answers" in out


def test_emit_json_value_and_topic_inference(capsys: pytest.CaptureFixture[str]) -> None:
    answer = {
        "response_id": "r",
        "survey": "csat",
        "score": 5,
        "user_id": "u",
        "ts": "2026-11-20T10:00:00Z",
    }
    code, out, _ = emit(capsys, "--json", json.dumps(answer), "--record-ts", "2026-11-20T10:00:00Z",
                        "--dry-run")  # fmt: skip
    assert code == 0 and "valid for survey-answers (key u)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # the engine's verdicts, before anything is sent
        (["purchase", "--user", "u", "--prop", "order_id=o", "--prop", "amount=-1"],
         "the engine would reject this record (schema): purchase needs props.amount"),
        (["page_view", "--user", "u"], "(schema): page_view needs session_id"),
        (["Page", "--user", "u"], "(schema)"),
        (["nps", "--user", "u", "--score", "11"], "(schema): nps score must be an integer 0-10"),
        (["signup", "--user", "u" * 129], "(schema)"),
        (["signup", "--user", "u", "--ts", "2026-11-20 10:00:00Z"], "(schema): ts is not an RFC 3339"),
        (["signup", "--user", "u", "--ts", "2020-01-01T00:00:00Z"], "(too_late)"),
        (["signup", "--user", "u", "--ts", "2999-01-01T00:00:00Z"], "(future)"),
        (["--json", "{not json"], "(bad_json)"),
        (["--json", "[1]"], "(schema): the value is not a JSON object"),
        # flags that cannot make a record
        (["signup"], "--user is required"),
        ([], "give the event TYPE"),
        (["nps", "--user", "u"], "needs --score"),
        (["signup", "--user", "u", "--score", "3"], "for csat, nps or ces"),
        (["page_view", "--user", "u", "--prop", "novalue"], "expected NAME=VALUE"),
        (["signup", "--user", "u", "--record-ts", "soon"], "--record-ts"),
        (["signup", "--json", "{}"], "not both"),
        (["nps", "--user", "u", "--score", "x"], "invalid int value"),
    ],
)  # fmt: skip
def test_emit_refuses_with_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = emit(capsys, *args, "--bootstrap", "127.0.0.1:1")
    assert code == 2
    assert message in err, err
    assert "sent to" not in out


# ---- engagement snapshot: rendering, and the answers of a worker --------------------------

SNAP: dict[str, Any] = {
    "as_of": "2026-11-20T12:00:00Z",
    "dau": 1234, "wau": 2000, "mau": 4000, "stickiness_pct": 30.85,
    "lifecycle": {"new": 4, "returning": 1000, "resurrecting": 230, "dormant": 7},
    "nps_7d": None, "by_touchpoint": {"support": {"csat_pct_24h": 80.0}},
    "revenue_90d": 62781.954, "rejected": {"schema": 3, "future": 0},
    "some_new_metric": 1,
    "coverage": {"product-events/0": 17},
}  # fmt: skip


def test_render_table() -> None:
    text = render_table(SNAP, "http://w:6066")
    lines = [ln.split() for ln in text.splitlines()]
    assert text.splitlines()[0] == "Snapshot as of 2026-11-20T12:00:00Z  (http://w:6066)"
    assert ["dau", "1,234"] in lines and ["stickiness_pct", "30.85"] in lines
    assert ["lifecycle.returning", "1,000"] in lines
    assert ["nps_7d", "n/a"] in lines
    assert ["by_touchpoint.support.csat_pct_24h", "80.00"] in lines
    assert ["revenue_90d", "62,781.95"] in lines
    assert ["rejected.schema", "3"] in lines
    assert ["some_new_metric", "1"] in lines and ["Other"] in lines  # nothing is dropped
    titles = [ln[0] for ln in lines if len(ln) == 1]
    assert titles == ["Activity", "Surveys", "Commerce", "Pipeline", "Other"]
    assert "covers 1 source partitions" in text


def test_sections_name_every_snapshot_key_once() -> None:
    from streams.config import Config
    from streams.replay import replay_lines

    keys = [k for _, ks in SECTIONS for k in ks]
    assert len(keys) == len(set(keys))
    empty = replay_lines([], Config(), "2026-11-20T12:00:00Z")
    assert set(keys) == set(empty) - {"as_of"}


class _Worker(BaseHTTPRequestHandler):
    """A stand-in for a worker's HTTP answers (status, body) keyed by the as_of parameter."""

    answers: ClassVar[dict[str, tuple[int, bytes]]] = {}
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        key = self.path.split("as_of=", 1)[1] if "as_of=" in self.path else ""
        status, body = self.answers[key]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def worker_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Worker)
    _Worker.answers = {
        "": (200, json.dumps(SNAP).encode()),
        "1": (
            503,
            json.dumps(
                {
                    "error": "not every partition answered exactly once (a "
                    "rebalance or a worker down?); retry",
                    "missing_user_partitions": [3],
                    "missing_account_partitions": [],
                }
            ).encode(),
        ),
        "2": (422, b'{"error": "as_of 2026-01-01T00:00:00Z is older than the state still holds"}'),
        "3": (400, b'{"error": "as-of is not an RFC 3339 instant"}'),
        "4": (404, b"<html>not found</html>"),
        "5": (200, b'{"hello": "world"}'),
    }
    _Worker.seen = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def snapshot(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["snapshot", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_snapshot_table_and_json(worker_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = snapshot(capsys, "--url", worker_url)
    assert code == 0 and "Snapshot as of 2026-11-20T12:00:00Z" in out
    code, out, _ = snapshot(capsys, "--url", worker_url, "--json")
    assert code == 0 and json.loads(out) == SNAP
    assert _Worker.seen == ["/snapshot", "/snapshot"]


@pytest.mark.parametrize(
    ("as_of", "code", "words"),
    [
        ("1", 5, ["HTTP 503", "missing: user partitions [3]", "Retry"]),
        ("2", 1, ["HTTP 422", "older than the state", "later instant"]),
        ("3", 2, ["HTTP 400", "RFC 3339"]),
        ("4", 1, ["HTTP 404", "not JSON", "engagement worker"]),
        ("5", 1, ["without a snapshot"]),
    ],
)
def test_snapshot_errors_name_the_problem_and_the_fix(
    worker_url: str, capsys: pytest.CaptureFixture[str], as_of: str, code: int, words: list[str]
) -> None:
    got, out, err = snapshot(capsys, "--url", worker_url, "--as-of", as_of)
    assert got == code
    assert out == ""
    for w in words:
        assert w in err, err


def test_snapshot_connection_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = snapshot(capsys, "--url", f"127.0.0.1:{port}")
    assert code == 1
    assert "connection refused" in err and "engagement worker" in err
    assert "ENGAGEMENT_WORKER_URL" in err


def test_snapshot_bad_as_of_is_refused_before_asking(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = snapshot(capsys, "--as-of", "yesterday", "--url", "127.0.0.1:1")
    assert code == 2 and "--as-of" in err and "RFC 3339" in err


def test_worker_url_precedence() -> None:
    assert client.worker_url(None, {}) == "http://127.0.0.1:6066"
    env = {"ENGAGEMENT_WORKER_URL": "http://w:7000/"}
    assert client.worker_url(None, env) == "http://w:7000"
    assert client.worker_url("w2:7001", env) == "http://w2:7001"
    with pytest.raises(client.WorkerError, match="not a worker URL"):
        client.worker_url("ftp://w", {})
