# Policies that raise: the decision is `error` with the exception's type, message and place.
import json


class PolicyError(Exception):
    pass


def parse(text):
    return json.loads(text)


def check(login):
    if login.get("name") == "mallory":
        raise PolicyError("mallory is not welcome")
    return login["id"]


def on_user_login(login_info, node_info):
    login = parse(login_info)
    return check(login)


def on_user_signup(signup_info, node_info):
    raise ValueError("signups are closed")


def on_new_node(node_info):
    # A policy cannot stop the host: SystemExit is just another exception here.
    raise SystemExit(3)
