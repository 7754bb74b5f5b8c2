"""The load generators: wrk with ``bodies.lua`` where installed, else a Python one.

Both send pre-built XML-RPC bodies in order, one per request, over keep-alive HTTP/1.1
connections, check every reply (HTTP 200 without ``<fault>``), and give the same
:class:`Result`. wrk is preferred: written in C, one thread drives 20 connections for a
fraction of a core, where the Python generator needs more CPU than some of the servers it
measures and takes it from them (all share the machine's cores).
"""
from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
XML_HEADERS = {"Content-Type": "text/xml", "User-Agent": "Python-xmlrpc/3.11",
               "Accept-Encoding": "gzip"}


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    faults: int      # replies that were not HTTP 200 without <fault>
    errors: int      # socket errors and timeouts
    wrapped: int     # times the body list started again (bodies reused)
    generator: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def problems(self, reusable: bool) -> list[str]:
        """Why this run is not a valid measurement (empty if it is)."""
        out = []
        if self.faults:
            out.append(f"{self.faults} faults")
        if self.errors:
            out.append(f"{self.errors} socket errors/timeouts")
        if self.wrapped and not reusable:
            out.append("ran out of seeded bodies (reused some)")
        if not self.requests:
            out.append("no requests completed")
        return out


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def write_bodies(path: Path, bodies: list[bytes]) -> Path:
    if any(b"\0" in b for b in bodies):
        raise ValueError("a body contains NUL, the separator")
    path.write_bytes(b"\0".join(bodies))
    return path


_BENCH_LINE = re.compile(r"BENCH (.*)")


def run_wrk(url: str, bodies_file: Path, connections: int, seconds: int,
            timeout: int = 10) -> Result:
    """One wrk run (one thread, ``connections`` keep-alive connections, ``seconds`` long)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout}s",
           "-s", str(HERE / "bodies.lua"), url, "--", str(bodies_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    match = _BENCH_LINE.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    v = {k: int(x) for k, x in (kv.split("=") for kv in match.group(1).split())}
    return Result(requests=v["requests"], seconds=v["duration_us"] / 1e6,
                  p50_ms=v["p50_us"] / 1000, p99_ms=v["p99_us"] / 1000, faults=v["faults"],
                  errors=v["errors"], wrapped=v["wrapped"], generator="wrk")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_python(port: int, bodies: list[bytes], connections: int,
               seconds: float | None = None,
               on_done: Callable[[int], None] | None = None) -> Result:
    """Threads with one keep-alive connection each.

    With ``seconds`` the bodies cycle (like ``bodies.lua``) until time is up; without, each
    body is sent exactly once (what ``rss.py`` needs: an exact call count). ``on_done(k)``
    is called (under a lock) after the k-th completed call.
    """
    latencies: list[float] = []
    lock = threading.Lock()
    state = {"next": 0, "done": 0, "faults": 0, "errors": 0, "wrapped": 0}
    n = len(bodies)
    deadline = None if seconds is None else time.perf_counter() + seconds

    def take() -> int | None:
        with lock:
            i = state["next"]
            if deadline is None:
                if i >= n:
                    return None
            elif time.perf_counter() >= deadline:
                return None
            elif i and i % n == 0:
                state["wrapped"] += 1
            state["next"] = i + 1
            return i % n

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        while (i := take()) is not None:
            t0 = time.perf_counter()
            ok = True
            try:
                conn.request("POST", "/", bodies[i], XML_HEADERS)
                resp = conn.getresponse()
                data = resp.read()
                ok = resp.status == 200 and b"<fault>" not in data
            except (OSError, http.client.HTTPException):
                conn.close()
                with lock:
                    state["errors"] += 1
                continue
            mine.append(time.perf_counter() - t0)
            with lock:
                state["done"] += 1
                state["faults"] += 0 if ok else 1
                if on_done is not None:
                    on_done(state["done"])
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return Result(requests=state["done"], seconds=elapsed,
                  p50_ms=percentile(latencies, .5) * 1000,
                  p99_ms=percentile(latencies, .99) * 1000, faults=state["faults"],
                  errors=state["errors"], wrapped=state["wrapped"], generator="python")
