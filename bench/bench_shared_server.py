"""One Prefect server per work dir against one per run: three runs of one work dir started 20 s apart, the
time until each has a usable server and the servers' resident memory while all three hold them.

    .venv/bin/python bench/bench_shared_server.py

"own" starts a server per run, one at a time on the shared database (as runs did before the work dir's
server was shared); "shared" is what a run does now (flows.server_keeper.run_server). Writes its table
to docs/PERFORMANCE.md between its markers; nothing there is typed by hand.
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
code_shared = r'''
import os, sys, time
from pathlib import Path
from flows.server_keeper import run_server
t = time.perf_counter()
with run_server(Path(sys.argv[1]), Path(sys.argv[1]).parent / "logs" / "prefect-server.log", say=lambda m: None) as api:
    print("READY", round(time.perf_counter() - t, 2), flush=True)
    time.sleep(float(sys.argv[2]))
'''
code_own = r'''
import os, sys, time
from pathlib import Path
from flows.stack import free_port, start_server, wait_healthy, stop
from filelock import FileLock
t = time.perf_counter()
home = Path(sys.argv[1]); home.mkdir(parents=True, exist_ok=True)
port = free_port()
with FileLock(str(home / ".old-start.lock")):
    p = start_server(home, port, home / f"server-{os.getpid()}.log")
    wait_healthy(f"http://127.0.0.1:{port}/api", proc=p)
print("READY", round(time.perf_counter() - t, 2), flush=True)
time.sleep(float(sys.argv[2]))
stop(p)
'''


def measure(home: Path, mode: str) -> dict:
    """Three runs of ``home`` (``mode``: ``own`` or ``shared``), 20 s apart; each one's seconds to a usable
    server and the servers' resident MB while the three run."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    procs, ready = [], []
    for i in range(3):
        procs.append(subprocess.Popen([sys.executable, "-c", code_shared if mode == "shared" else code_own, str(home),
                                       str(60 - 20 * i)], stdout=subprocess.PIPE, text=True, cwd=str(ROOT), env=env))
        ready.append(float(procs[-1].stdout.readline().split()[1]))
        if i < 2:
            time.sleep(20)
    servers = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] and "server" in p.info["cmdline"]
               and "start" in p.info["cmdline"] and any("prefect" in c for c in p.info["cmdline"])
               and any(str(home) in v for v in p.environ().values())]
    rss = [sum(q.memory_info().rss for q in [s, *s.children(recursive=True)]) / 2**20 for s in servers]
    for p in procs:
        p.wait()
    return {"ready_s": ready, "servers": len(servers), "rss_mb": rss}


def main() -> int:
    from bench.common import write_section
    from deid.provenance import loadavg

    load0 = loadavg()
    with tempfile.TemporaryDirectory() as tmp:
        res = {mode: measure(Path(tmp) / mode / "prefect", mode) for mode in ("own", "shared")}
    load1 = loadavg()
    rows = [f"| {'a server per run (before)' if m == 'own' else 'one per work dir (now)'} | "
            + " | ".join(f"{x:.1f}" for x in r["ready_s"]) + f" | {r['servers']} | {sum(r['rss_mb']):.0f} |"
            for m, r in res.items()]
    text = "\n".join([
        "## One Prefect server per work dir", "",
        "Written by `bench/bench_shared_server.py`; nothing here is typed by hand.", "",
        f"- load average (1/5/15 min) at start: {load0}; at end: {load1}",
        "- three runs of one work dir started 20 s apart, each holding its server until the last has one; "
        "seconds until each run has a usable server (Python and Prefect imports included), and the servers' "
        "resident memory while the three hold them", "",
        "| servers | run 1 s | run 2 s | run 3 s | servers running | resident MB |",
        "|---|---|---|---|---|---|", *rows])
    print(text)
    write_section(ROOT / "docs" / "PERFORMANCE.md", "bench_shared_server", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
