"""The HTTP front's test policy in Python: the twin of login.lua (see there)."""
import json
import time


def on_user_login(login_info, node_info):
    login = json.loads(login_info)
    if isinstance(login.get("ms"), int):
        time.sleep(login["ms"] / 1000)
    user_id = login.get("id")
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        return user_id
    name = login.get("login")
    if name == "alice":
        return 7 if login.get("password") == "wonderland" else -1
    if name == "newbie":
        return 0
    if name == "boom":
        raise RuntimeError("boom")
    if name == "show-login":
        raise RuntimeError(login_info)
    if name == "show-node":
        raise RuntimeError(node_info)
    return -1


def on_user_signup(signup_info, node_info):
    return -1 if json.loads(signup_info).get("name") == "taken" else 0


def on_new_node(node_info):
    return json.loads(node_info).get("role", "unauthorized")
