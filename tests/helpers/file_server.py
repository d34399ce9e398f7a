"""A static file server on 127.0.0.1 for the download tests: serves {URL path: bytes} written by
the tests, in an upstream's URL layout, and can misbehave on purpose (serve wrong bytes, or cut a
transfer short after announcing its full Content-Length) a given number of times per path."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    def __init__(self, files: dict[str, bytes] | None = None):
        self.files: dict[str, bytes] = dict(files or {})
        self.corrupt: dict[str, int] = {}  # path → how many more answers carry flipped bytes
        self.truncate: dict[str, int] = {}  # path → how many more answers stop half-way
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                server.requests.append(path)
                data = server.files.get(path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if server.corrupt.get(path, 0) > 0:
                    server.corrupt[path] -= 1
                    data = bytes(byte ^ 0xFF for byte in data[:64]) + data[64:]
                cut = server.truncate.get(path, 0) > 0
                if cut:
                    server.truncate[path] -= 1
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if cut else data)
                if cut:
                    self.wfile.flush()
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop answering (the port is closed: a request is refused, as with the network off)."""
        self.httpd.shutdown()
        self.httpd.server_close()
