# Benchmark policy `realistic` in Python, as the seed-style peer does it: look the user up,
# verify the password against its argon2id hash (m=19456 KiB, t=2, p=1), return the id.
# Verifying releases the GIL, so workers hash on every core at once.
import json

import authhost
from authhost import db


def setup():
    db.exec("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT UNIQUE, pw TEXT)")
    for i in range(1, 21):
        if not db.query("SELECT 1 AS found FROM users WHERE id = ?", (i,)):
            db.exec("INSERT INTO users (id, name, pw) VALUES (?, ?, ?)",
                    (i, f"user{i}", authhost.hash_password(f"pw{i}")))


def on_user_login(login_info, node_info):
    info = json.loads(login_info)
    rows = db.query("SELECT id, pw FROM users WHERE name = ?", (info["name"],))
    if not rows:
        return -1
    if authhost.verify_password(rows[0]["pw"], info["password"]):
        return rows[0]["id"]
    return -1
