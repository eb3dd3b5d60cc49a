# Answers with the number in its argument, so each caller can tell its own answer.
import json


def on_user_login(login_info, node_info):
    return json.loads(login_info)["n"]


def on_new_node(node_info):
    # A little work in Python between the reads, so that threads interleave inside calls.
    node = json.loads(node_info)
    total = sum(range(node["n"] % 100))
    return "secondary" if total >= 0 and node["n"] % 2 else "async"
