# The memory benchmark's Python policy (the twin of memory_churn.lua): some code and some
# data, so that a module or interpreter state leaked per reload would show in resident memory.
import json

NAMES = ["user-%d" % i for i in range(1, 2001)]


def on_user_login(login_info, node_info):
    name = json.loads(login_info).get("name", "")
    if name in NAMES:
        return NAMES.index(name) + 1
    return -1


def on_new_node(node_info):
    return "secondary"
