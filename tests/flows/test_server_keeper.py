"""One Prefect server per work dir: what a run believes of ``server.json`` and of the leases (no server is
started here; the shared server itself is exercised by test_concurrent_runs and test_run_signals)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from flows.server_keeper import LEASES, SERVER_FILE, _live_leases, _start_time, live_server


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server name
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, *args):
        pass


@pytest.fixture
def hostile_api():
    """A local HTTP server that answers /health like Prefect: what a planted server.json could name."""
    httpd = HTTPServer(("127.0.0.1", 0), _Healthy)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/api"
    httpd.shutdown()


@pytest.mark.reliability(section="7. Planted files", case="prefect/server.json planted, naming a healthy API on loopback",
                         before="(new file: one Prefect server per work dir)",
                         after="believed only when its pid is this user's keeper of this home; else a new server is started")
def test_a_planted_server_file_is_not_believed(tmp_path, hostile_api):
    home = tmp_path / "prefect"
    home.mkdir()
    plant = {"pid": os.getpid(), "port": 1, "api": hostile_api, "log": "x"}  # alive, healthy, not a keeper
    (home / SERVER_FILE).write_text(json.dumps(plant))
    assert live_server(home) is None
    # a process whose command line looks like a keeper, but of another home
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "flows.server_keeper",
                              str(tmp_path / "elsewhere")])
    try:
        (home / SERVER_FILE).write_text(json.dumps({**plant, "pid": other.pid}))
        assert live_server(home) is None
    finally:
        other.kill()
        other.wait()
    # the same process, keeper of this home, is believed; an API off loopback never is
    keeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "flows.server_keeper", str(home)])
    try:
        (home / SERVER_FILE).write_text(json.dumps({**plant, "pid": keeper.pid}))
        assert live_server(home)["api"] == hostile_api
        (home / SERVER_FILE).write_text(json.dumps({**plant, "pid": keeper.pid, "api": "http://10.0.0.1:80/api"}))
        assert live_server(home) is None
    finally:
        keeper.kill()
        keeper.wait()
    for junk in ("not json", "[]", '{"pid": "x"}', json.dumps({**plant, "pid": None})):
        (home / SERVER_FILE).write_text(junk)
        assert live_server(home) is None


def test_leases_of_ended_or_reused_processes_are_dropped(tmp_path):
    home = tmp_path / "prefect"
    leases = home / LEASES
    leases.mkdir(parents=True)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    me = os.getpid()
    (leases / "mine.json").write_text(json.dumps({"pid": me, "start_time": _start_time(me)}))
    (leases / "ended.json").write_text(json.dumps({"pid": ended.pid, "start_time": "1"}))
    (leases / "reused.json").write_text(json.dumps({"pid": me, "start_time": "not my start"}))  # pid reused
    (leases / "junk.json").write_text("{")
    assert _live_leases(home) == [me]
    assert sorted(p.name for p in leases.iterdir()) == ["mine.json"]
