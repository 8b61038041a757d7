"""Sandbox Okta: pages per second when a client walks 100,000 users at 200 a page.

The sandbox runs in its own process (as in the local stack, where the backup worker is another
process), rate limits out of the way; the client follows `rel="next"` over one keep-alive
connection and reads each body without parsing it. Also timed: the members of the 20 largest
groups (1,000 a page) and the users of 50 apps.

Baseline, measured in the same run: the same HTTP server class answering every request with one
fixed body of a user page's size, i.e. the cost of HTTP alone. The ratio is what rendering
costs on top of it. The figure that matters for the backup benchmark (issue 5, about a minute
for 100,000 users / 5,000 groups / 1,000 apps) is the pages per second: the 500 pages of users
must take seconds, not a large part of that minute. Run with `make bench` or
`.venv/bin/python <this file>`.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

USERS = int(os.environ.get("BENCH_SANDBOX_USERS", "100000"))
_NEXT = re.compile(r'<([^>]+)>; rel="next"')
_UNLIMITED = {"limit": 1_000_000, "window_seconds": 60}


def _start_sandbox() -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "strongroom_local.sandbox_okta",
            "--users",
            str(USERS),
            "--size",
            "groups=5000",
            "--size",
            "apps=1000",
        ],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    ready = json.loads(process.stdout.readline())["sandbox_okta"]
    return process, ready


def _walk(connection: http.client.HTTPConnection, path: str, token: str) -> tuple[int, int]:
    """Follow `next` links from `path`; (pages, bytes)."""
    pages = size = 0
    target: str | None = path
    while target is not None:
        connection.request("GET", target, headers={"Authorization": f"SSWS {token}"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{target}: HTTP {response.status} {body[:200]!r}")
        pages += 1
        size += len(body)
        links = ", ".join(response.headers.get_all("Link") or [])
        found = _NEXT.search(links)
        target = None
        if found:
            parts = urlsplit(found.group(1))
            target = f"{parts.path}?{parts.query}"
    return pages, size


def _control(url: str, token: str, method: str, route: str, body: Any) -> Any:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    connection.request(
        method,
        f"/__sandbox/{route}",
        body=json.dumps(body),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    answer = json.loads(connection.getresponse().read())
    connection.close()
    return answer


def _baseline(body: bytes, pages: int) -> float:
    class Fixed(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Fixed)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=60)
    start = time.perf_counter()
    for _ in range(pages):
        connection.request("GET", "/")
        connection.getresponse().read()
    elapsed = time.perf_counter() - start
    connection.close()
    server.shutdown()
    server.server_close()
    return pages / elapsed


def main() -> int:
    process, ready = _start_sandbox()
    try:
        url, token = ready["url"], ready["api_token"]
        limits = {bucket: _UNLIMITED for bucket in ("/api/v1/users", "/api/v1/groups")}
        limits["/api/v1/apps"] = _UNLIMITED
        _control(url, ready["control_token"], "PUT", "rate-limits", limits)
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        start = time.perf_counter()
        pages, size = _walk(connection, "/api/v1/users?limit=200", token)
        users_seconds = time.perf_counter() - start
        pages_per_second = pages / users_seconds
        print(
            f"users: {USERS} in {pages} pages of 200, {users_seconds:5.2f} s,"
            f" {pages_per_second:6.1f} pages/s, {size / users_seconds / 1e6:5.1f} MB/s"
        )
        connection.request(
            "GET", "/api/v1/groups?limit=10000", headers={"Authorization": f"SSWS {token}"}
        )
        groups = json.loads(connection.getresponse().read())
        start = time.perf_counter()
        member_pages = 0
        for group in groups[:20]:
            member_pages += _walk(connection, f"/api/v1/groups/{group['id']}/users", token)[0]
        print(f"members of 20 groups: {member_pages} pages in {time.perf_counter() - start:5.2f} s")
        connection.request(
            "GET", "/api/v1/apps?limit=50", headers={"Authorization": f"SSWS {token}"}
        )
        apps = json.loads(connection.getresponse().read())
        start = time.perf_counter()
        app_pages = sum(_walk(connection, f"/api/v1/apps/{a['id']}/users", token)[0] for a in apps)
        print(f"users of 50 apps: {app_pages} pages in {time.perf_counter() - start:5.2f} s")
        connection.close()
        baseline = _baseline(b"x" * (size // pages), pages)
        print(f"baseline: fixed body of the same size, same server class: {baseline:6.1f} pages/s")
        print(f"ratio (baseline / sandbox): {baseline / pages_per_second:4.2f}x")
    finally:
        process.terminate()
        process.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
