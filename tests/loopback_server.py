"""A real HTTP server on 127.0.0.1 (random free port) whose answers each test scripts.

Per path, a list of behaviours used in order (the last one repeats):
("file", bytes) | ("status", code) | ("drop", bytes) - sends the headers of the full file, half the
bytes, then closes | ("corrupt", bytes) - the file with some bytes flipped.
Only loopback is ever served or contacted.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer:
    def __init__(self) -> None:
        self.routes: dict[str, list[tuple]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.requests.append(self.path)
                plan = server.routes.get(self.path)
                if not plan:
                    self.send_error(404)
                    return
                kind, arg = plan.pop(0) if len(plan) > 1 else plan[0]
                if kind == "status":
                    self.send_error(arg)
                    return
                body = bytes(arg)
                if kind == "corrupt":
                    body = bytearray(body)
                    for i in range(0, len(body), max(1, len(body) // 7)):
                        body[i] ^= 0xFF
                    body = bytes(body)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if kind == "drop":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def do_CONNECT(self) -> None:  # noqa: N802 - as an HTTPS proxy: refuse, permanently
                server.requests.append(self.path)
                self.send_error(404)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def serve(self, path: str, *behaviours: tuple) -> str:
        self.routes[path] = list(behaviours)
        return self.url(path)

    def __enter__(self) -> "LoopbackServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
