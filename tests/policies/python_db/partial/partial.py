# Policies that fail half-way through their writes: nothing they wrote may stay.
from authhost import db


def setup():
    db.exec("CREATE TABLE IF NOT EXISTS items (name TEXT PRIMARY KEY)")


# Inside `with db.transaction():` the exception rolls back both inserts and goes on.
def on_user_signup(signup_info, node_info):
    with db.transaction():
        db.exec("INSERT INTO items (name) VALUES (?)", (signup_info + "-1",))
        db.exec("INSERT INTO items (name) VALUES (?)", (signup_info + "-2",))
        raise RuntimeError("failed after two inserts")
    return 1


# A transaction opened by hand and never closed: the host rolls it back after the call.
def on_user_login(login_info, node_info):
    db.exec("BEGIN")
    db.exec("INSERT INTO items (name) VALUES (?)", (login_info,))
    if node_info == "fail":
        raise RuntimeError("failed inside a hand-made transaction")
    return 1  # returns without COMMIT: still rolled back


# How many items there are, as a node role: primary when none, secondary otherwise.
def on_new_node(node_info):
    rows = db.query("SELECT count(*) AS n FROM items")
    return "primary" if rows[0]["n"] == 0 else "secondary"
