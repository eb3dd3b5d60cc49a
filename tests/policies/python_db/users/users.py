# Users with argon2id hashes: signup refuses duplicates and returns the new id, login
# verifies the password (argon2 or bcrypt hashes, e.g. users imported from elsewhere).
import json

import authhost
from authhost import db


def setup():
    db.exec("""
        CREATE TABLE IF NOT EXISTS users (
          id INTEGER PRIMARY KEY,
          name TEXT NOT NULL UNIQUE,
          password_hash TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS signups (
          user_id INTEGER NOT NULL REFERENCES users(id),
          node TEXT NOT NULL
        );
    """)


def on_user_signup(signup_info, node_info):
    signup = json.loads(signup_info)
    node = json.loads(node_info)
    password_hash = authhost.hash_password(signup["password"])
    with db.transaction():
        added = db.exec(
            "INSERT INTO users (name, password_hash) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            (signup["name"], password_hash),
        )
        if added == 0:
            return -1
        user_id = db.last_insert_id()
        # Python runs between the two writes while this worker holds the write lock: other
        # workers wait for the lock without holding the GIL.
        note = json.dumps({"user": user_id, "node": node["public_key"]})
        db.exec("INSERT INTO signups (user_id, node) VALUES (?, ?)", [user_id, json.loads(note)["node"]])
        return user_id


def on_user_login(login_info, node_info):
    login = json.loads(login_info)
    rows = db.query("SELECT id, password_hash FROM users WHERE name = ?", (login["name"],))
    if not rows:
        return -1
    user = rows[0]
    if authhost.verify_password(user["password_hash"], login["password"]):
        return user["id"]
    return -1
