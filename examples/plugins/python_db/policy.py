# An example policy to start from, in Python: users with argon2id password hashes, and a node
# allowlist, both kept in the application database (authhost.db, or --db PATH). It does what
# plugins/policy.lua does; use one or the other (a callback may be defined by one plugin
# only):
#
#     authhost check --plugins examples/plugins/python_db
#     authhost call new_node '{"public_key":"pk-office"}' --plugins examples/plugins/python_db
#
# authhost calls these functions on its worker threads. Arguments are the strings the
# secondary node sent; decode them with json.loads. Return values (contract §2):
#   user callbacks: a user id (>= 1), 0 (new user), -1 (not authorized), -3 (error)
#   on_new_node:    "primary", "secondary", "async", "unauthorized" (or -1), -3 (error)
# Anything else, and any exception, is an error, and an error never lets anyone in.
#
# Python policies are trusted code, like any Python the administrator installs: they are not
# sandboxed.
import json
import re
import time

import authhost
from authhost import db, limits

# A user name: letters, digits, "_", "." and "-", at most 64 of them.
NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def setup():
    """Runs once each time the plugins are (re)loaded, before they go live: creates the tables
    and seeds them. Every statement is idempotent, so reloading changes nothing."""
    db.exec("""
        CREATE TABLE IF NOT EXISTS users (
          id            INTEGER PRIMARY KEY,
          name          TEXT NOT NULL UNIQUE,
          password_hash TEXT NOT NULL,
          created_at    INTEGER NOT NULL
        );
        CREATE TABLE IF NOT EXISTS nodes (
          public_key TEXT PRIMARY KEY,
          role       TEXT NOT NULL CHECK (role IN ('primary', 'secondary', 'async')),
          note       TEXT
        );
        CREATE TABLE IF NOT EXISTS events (
          id      INTEGER PRIMARY KEY,
          kind    TEXT NOT NULL,
          user_id INTEGER REFERENCES users(id),
          node    TEXT,
          at      INTEGER NOT NULL
        );
    """)
    # The devices allowed to join, by public key, and the role each gets.
    allowed = [
        ("pk-office", "primary", "the office server"),
        ("pk-laptop", "secondary", "alice's laptop"),
        ("pk-backup", "async", "the off-site backup"),
    ]
    for node in allowed:
        db.exec("INSERT OR IGNORE INTO nodes (public_key, role, note) VALUES (?, ?, ?)", node)
    # A first user, alice (password "wonderland"), hashed only when she is not there yet.
    if not db.query("SELECT 1 AS found FROM users WHERE name = ?", ("alice",)):
        db.exec("INSERT OR IGNORE INTO users (name, password_hash, created_at) VALUES (?, ?, ?)",
                ("alice", authhost.hash_password("wonderland"), int(time.time())))


def decode(text):
    """The JSON object in `text`, or None."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def node_role(public_key):
    """The role of an allowed node, or None."""
    if not isinstance(public_key, str):
        return None
    rows = db.query("SELECT role FROM nodes WHERE public_key = ?", (public_key,))
    return rows[0]["role"] if rows else None


# Verifying against a dummy hash when the user does not exist makes "no such user" take as
# long as "wrong password", so response times do not tell which names exist.
_dummy_hash = None


def spend_a_verify(password):
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = authhost.hash_password("not a real password")
    authhost.verify_password(_dummy_hash, password)


def on_new_node(node_info):
    node = decode(node_info)
    if node is None or not isinstance(node.get("public_key"), str):
        authhost.log.warn("a node without a public key was refused")
        return "unauthorized"
    return node_role(node["public_key"]) or "unauthorized"


# Login throttling (see plugins/README.md for why these numbers): at most 10 attempts per
# name without a success, and 100 attempts per node, in any 15 minutes. The counts live in
# the database, so every authhost process on it shares them.
NAME_ATTEMPTS, NODE_ATTEMPTS, THROTTLE_WINDOW = 10, 100, 15 * 60


def within_limits(name, public_key):
    """Records this attempt against the name and the node; False once either is over."""
    name_ok = limits.hit("login-name:" + name, NAME_ATTEMPTS, THROTTLE_WINDOW)
    node_ok = limits.hit("login-node:" + public_key, NODE_ATTEMPTS, THROTTLE_WINDOW)
    return name_ok and node_ok


def on_user_login(login_info, node_info):
    login, node = decode(login_info), decode(node_info)
    if login is None or node is None:
        return -3
    name, password = login.get("name"), login.get("password")
    if not isinstance(name, str) or not isinstance(password, str):
        return -1
    if not node_role(node.get("public_key")):
        return -1  # only through allowed nodes
    # Before any lookup or hashing: a throttled guess costs the host no password check.
    if not within_limits(name, node["public_key"]):
        authhost.log.warn("login throttled: too many attempts for this name or node")
        return -1
    rows = db.query("SELECT id, password_hash FROM users WHERE name = ?", (name,))
    if not rows:
        spend_a_verify(password)
        return -1
    user = rows[0]
    if not authhost.verify_password(user["password_hash"], password):
        return -1
    limits.reset("login-name:" + name)
    return user["id"]


def on_user_signup(signup_info, node_info):
    signup, node = decode(signup_info), decode(node_info)
    if signup is None or node is None:
        return -3
    name, password = signup.get("name"), signup.get("password")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return -1
    if not isinstance(password, str) or len(password) < 8:
        return -1
    if not node_role(node.get("public_key")):
        return -1
    # Hash before taking the write lock: argon2id takes tens of milliseconds (and releases
    # the GIL meanwhile, so other workers keep running).
    password_hash = authhost.hash_password(password)
    now = int(time.time())
    with db.transaction():
        added = db.exec("""INSERT INTO users (name, password_hash, created_at) VALUES (?, ?, ?)
                           ON CONFLICT (name) DO NOTHING""", (name, password_hash, now))
        if added == 0:
            return -1  # the name is taken
        user_id = db.last_insert_id()
        db.exec("INSERT INTO events (kind, user_id, node, at) VALUES ('signup', ?, ?, ?)",
                (user_id, node["public_key"], now))
        return user_id
