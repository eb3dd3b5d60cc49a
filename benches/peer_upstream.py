#!/usr/bin/env python3
"""The seed-style peer of the upstream flow (examples/plugins/upstream/): Python threads, each
logging in by asking the backend with urllib (GET /auth?login=&password=, 2 s timeout), and on
200 storing an argon2id hash (argon2-cffi, m=19456 KiB, t=2, p=1) in SQLite, as the policy
does. Run it beside `authhost bench` on the same backend, in the same minute:

    /usr/bin/python3.11 tests/upstream_backend.py   # prints PORT
    target/peer-venv/bin/python benches/peer_upstream.py --url http://127.0.0.1:PORT/auth \\
        --threads 2 --seconds 5

Prints one JSON line: logins/s. Needs argon2-cffi (scripts/setup puts it in target/peer-venv).
"""
import argparse
import json
import os
import sqlite3
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import argon2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()
    hasher = argon2.PasswordHasher(memory_cost=19456, time_cost=2, parallelism=1)
    path = os.path.join(tempfile.mkdtemp(), "peer.db")
    c = sqlite3.connect(path)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE upstream_users(id INTEGER PRIMARY KEY, name TEXT UNIQUE, password_hash TEXT)")
    c.commit()
    c.close()
    stop = time.monotonic() + a.seconds
    counts = [0] * a.threads
    url = a.url + "?" + urllib.parse.urlencode({"login": "user0", "password": "letmein"})

    def worker(i):
        conn = sqlite3.connect(path, timeout=2)
        while time.monotonic() < stop:
            try:
                status = urllib.request.urlopen(url, timeout=2).status
            except urllib.error.HTTPError as e:
                status = e.code
            if status == 200:
                with conn:
                    conn.execute(
                        "INSERT INTO upstream_users(name, password_hash) VALUES (?, ?)"
                        " ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash",
                        ("user0", hasher.hash("letmein")))
                conn.execute("SELECT id FROM upstream_users WHERE name = ?", ("user0",)).fetchone()
                counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(a.threads)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    print(json.dumps({"peer": "urllib-threads", "threads": a.threads,
                      "logins_per_s": round(sum(counts) / elapsed, 1)}))


if __name__ == "__main__":
    main()
