# Benchmark policy `lookup` in Python, as the seed-style peer does it
# (shared/bench/peer_seed.py): decode login_info, one indexed SELECT by name, return the id.
import json

from authhost import db


def setup():
    db.exec("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT UNIQUE, pw TEXT)")
    for i in range(1, 21):
        db.exec("INSERT OR IGNORE INTO users (id, name, pw) VALUES (?, ?, ?)",
                (i, f"user{i}", f"pw{i}"))


def on_user_login(login_info, node_info):
    info = json.loads(login_info)
    rows = db.query("SELECT id FROM users WHERE name = ?", (info["name"],))
    return rows[0]["id"] if rows else -1
