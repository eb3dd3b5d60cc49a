"""A policy author's typo: `on_newnode` for `on_new_node`."""
import json


def role_of(node):
    return "secondary" if node.get("public_key") == "k" else "unauthorized"


def on_newnode(node_info):
    return role_of(json.loads(node_info))
