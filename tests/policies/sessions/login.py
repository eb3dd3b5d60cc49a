# Sessions, limits and state as a Python policy uses them: the twin of login.lua, for
# tests/it/sessions.rs. The password "right" is user 42; each password check is counted in
# `checks`, so the tests can see that a throttled login checks nothing.
import json

import authhost
from authhost import db, limits, sessions, state


def setup():
    db.exec("""
        CREATE TABLE IF NOT EXISTS checks (n INTEGER NOT NULL);
        INSERT INTO checks SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM checks);
    """)


def on_user_login(login_info, node_info):
    login = json.loads(login_info)
    if not limits.hit("name:" + login["name"], 3, 60):
        return -1  # throttled: no password check
    db.exec("UPDATE checks SET n = n + 1")
    if login["password"] == "right":
        limits.reset("name:" + login["name"])
        return 42
    return -1


def on_user_signup(signup_info, node_info):
    s = json.loads(signup_info)
    if "put" in s:
        state.put(s["put"], "nonce", 60)
        return 0 if state.get(s["put"]) == "nonce" else -3
    if "take" in s:
        return 7 if state.take(s["take"]) == "nonce" else -1
    if s.get("cycle"):
        token = sessions.open(9, 30)
        if sessions.check(token) != 9 or not sessions.close(token):
            return -3
        return 9 if sessions.check(token) is None else -3
    return -3


def on_new_node(node_info):
    node = json.loads(node_info)
    token = node.get("token")
    if isinstance(token, str) and sessions.check(token) == 42:
        return "primary"
    return "unauthorized"
