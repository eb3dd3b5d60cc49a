# setup() fails on a SQL error: the set must not load, and the error names the problem.
from authhost import db


def setup():
    db.exec("CREATE TABLE broken (")


def on_new_node(node_info):
    return "primary"
