"""A seed-style auth backend for authhost's upstream tests (run with /usr/bin/python3.11).

GET /auth?login=NAME&password=PW: 200 for user0/user1 with their password (letmein at first),
403 for a wrong password, 404 for an unknown user. Keep-alive (HTTP/1.1). Control:
  GET /control/slow?ms=N          every later /auth answer waits N ms first
  GET /control/password?login=NAME&password=PW   changes a user's password
  GET /redirect?to=URL            answers 302 to URL
Prints the port it listens on (127.0.0.1), then serves until killed. With --cert and --key
it speaks HTTPS.
"""

import argparse
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PASSWORDS = {"user0": "letmein", "user1": "letmein"}
STATE = {"slow_ms": 0}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The handler writes the headers and the body in two sends. With Nagle's algorithm on, a
    # kept-alive client's delayed ACK of the headers holds the body back 40 ms: a real backend
    # (nginx, any web framework) does not wait like that, so neither does this one.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def answer(self, status, text="", headers=()):
        body = text.encode()
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/control/slow":
            STATE["slow_ms"] = int(q.get("ms", "0"))
            return self.answer(200, "ok")
        if url.path == "/control/password":
            with LOCK:
                PASSWORDS[q["login"]] = q["password"]
            return self.answer(200, "ok")
        if url.path == "/redirect":
            return self.answer(302, "", [("Location", q["to"])])
        if url.path == "/auth":
            if STATE["slow_ms"]:
                time.sleep(STATE["slow_ms"] / 1000)
            with LOCK:
                expected = PASSWORDS.get(q.get("login", ""))
            if expected is None:
                return self.answer(404, "unknown user")
            if q.get("password") != expected:
                return self.answer(403, "wrong password")
            return self.answer(200, "ok")
        return self.answer(404, "no such path")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
