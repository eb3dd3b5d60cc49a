# Marks passed between workers through the database: proves they share one database.
# {"op":"write","name":N} adds a mark; {"op":"read","name":N} answers "secondary" when the
# mark exists, "unauthorized" otherwise; {"op":"hold","name":N,"until":U} adds N, then keeps
# its worker busy until another request adds U.
import json

from authhost import db


def setup():
    db.exec("CREATE TABLE IF NOT EXISTS marks (name TEXT PRIMARY KEY)")


def has(name):
    return len(db.query("SELECT 1 AS found FROM marks WHERE name = ?", (name,))) > 0


def on_new_node(node_info):
    request = json.loads(node_info)
    if request["op"] == "read":
        return "secondary" if has(request["name"]) else "unauthorized"
    db.exec("INSERT OR IGNORE INTO marks (name) VALUES (?)", (request["name"],))
    if request["op"] == "hold":
        while not has(request["until"]):
            pass
    return "primary"
