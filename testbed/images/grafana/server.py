"""Grafana stand-in for the offline test bed (NOT Grafana).

Answers GET /api/health with Grafana's health JSON and / with a small HTML page,
logs every request to stdout and exits at once on SIGTERM (it runs as PID 1).
Listens on GF_SERVER_HTTP_PORT (default 3000), IPv6 dual-stack when available.
Given a command as arguments (e.g. `wget ...`), it runs that command instead.
"""

import json
import os
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HEALTH = {"commit": "devenv-stand-in", "database": "ok", "version": "stand-in"}
PAGE = b"""<!doctype html>
<html><head><title>Grafana (devenv stand-in)</title></head>
<body><h1>Grafana stand-in</h1>
<p>This is the devenv offline test bed's stand-in for Grafana. Only
<a href="/api/health">/api/health</a> is implemented.</p></body></html>
"""


class Handler(BaseHTTPRequestHandler):
    server_version = "grafana-stand-in"

    def _send(self, status, body, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/api/health":
            body = json.dumps(HEALTH, indent=2).encode() + b"\n"
            self._send(200, body, "application/json; charset=UTF-8")
        elif path in ("/", "/login"):
            self._send(200, PAGE, "text/html; charset=UTF-8")
        else:
            body = json.dumps({"message": "Not found"}).encode() + b"\n"
            self._send(404, body, "application/json; charset=UTF-8")

    do_HEAD = do_GET

    def log_message(self, fmt, *args):
        # Docker collects stdout; stderr would work too, but Grafana logs to stdout.
        sys.stdout.write("%s - - [%s] %s\n" % (self.address_string(), self.log_date_time_string(), fmt % args))
        sys.stdout.flush()


class DualStackServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self):
        # Accept IPv4 too, so 127.0.0.1 and ::1 both reach the server.
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def main():
    # `docker run IMAGE wget ...` runs that command, like an image whose CMD is replaceable.
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        os.execvp(sys.argv[1], sys.argv[1:])
    port = int(os.environ.get("GF_SERVER_HTTP_PORT", "3000"))
    # PID 1 gets no default signal handling from the kernel: exit explicitly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        httpd = DualStackServer(("::", port), Handler)
    except OSError:
        httpd = ThreadingHTTPServer(("0.0.0.0", port), Handler)
        httpd.daemon_threads = True
    print("grafana stand-in listening on port %d (serves /api/health only)" % port, flush=True)
    try:
        httpd.serve_forever()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        httpd.server_close()
        print("grafana stand-in stopped", flush=True)


if __name__ == "__main__":
    main()
