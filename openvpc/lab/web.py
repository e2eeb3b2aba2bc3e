"""The lab internet's web server: answers every GET with one short page and logs each
client's address (to stderr, which the lab keeps as the access log)."""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = b"hello from the internet\n"


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the name http.server calls
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)


def main(port: int) -> None:
    ThreadingHTTPServer(("0.0.0.0", port), _Page).serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 80)
