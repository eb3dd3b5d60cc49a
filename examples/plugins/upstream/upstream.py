"""Logins checked by an upstream auth backend first, with a local cache when it is down.

The Python twin of upstream.lua (read that file for the flow): 200 stores an argon2id hash
and allows; 403/404 refuse (and forget a stale or deleted user's hash); unreachable, 5xx or
slower than BUDGET_MS falls back to the cached hash, logged and counted in `status`. A user
refused by a reachable backend is never let in from the cache. Nothing logged holds the
password: authhost.http's errors show the URL without its query.
"""

import json
from urllib.parse import urlencode

import authhost
from authhost import db, http

BUDGET_MS = 1000  # how long the backend may take before the cache answers


def setup():
    db.exec(
        "CREATE TABLE IF NOT EXISTS upstream_users ("
        " id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL)"
    )


def cached(name):
    rows = db.query("SELECT id, password_hash FROM upstream_users WHERE name = ?", (name,))
    return rows[0] if rows else None


def from_cache(name, password, why):
    http.fallback()
    authhost.log.warn(f"upstream unavailable ({why}): checking {name} against the local cache")
    user = cached(name)
    if user and authhost.verify_password(user["password_hash"], password):
        authhost.log.info(f"login of {name} allowed by the local cache")
        return user["id"]
    authhost.log.info(f"login of {name} refused by the local cache")
    return -1


def on_user_login(login_info, node_info):
    try:
        login = json.loads(login_info)
    except ValueError:
        return -3
    name, password = login.get("name"), login.get("password")
    if not isinstance(name, str) or not isinstance(password, str) or not name:
        return -1
    allowed = http.allowed()
    if not allowed:
        authhost.log.error("no --upstream prefix: the backend's URL is unknown")
        return -3
    url = allowed[0] + "?" + urlencode({"login": name, "password": password})
    try:
        answer = http.get(url, timeout_ms=BUDGET_MS)
    except http.Error as e:
        return from_cache(name, password, str(e))
    if answer.status == 200:
        db.exec(
            "INSERT INTO upstream_users (name, password_hash) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash",
            (name, authhost.hash_password(password)),
        )
        authhost.log.info(f"login of {name} allowed by the upstream")
        return cached(name)["id"]
    if answer.status == 404:
        db.exec("DELETE FROM upstream_users WHERE name = ?", (name,))
        authhost.log.info(f"login of {name} refused by the upstream (unknown user)")
        return -1
    if answer.status == 403:
        user = cached(name)
        if user and authhost.verify_password(user["password_hash"], password):
            db.exec("DELETE FROM upstream_users WHERE name = ?", (name,))
        authhost.log.info(f"login of {name} refused by the upstream (wrong password)")
        return -1
    return from_cache(name, password, f"status {answer.status}")
