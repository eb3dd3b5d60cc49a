# The Python twin of login.lua: the same answers to the same requests.
#   alice / wonderland      user 7 (checked against an argon2id hash)
#   alice / anything else   not authorized
#   alice at /private/attic/… (the X-Original-URI nginx passes, node_info.original_uri)
#                           not authorized
#   mallory                 the policy raises: error
#   sloth                   runs until its timeout: error
import json

import authhost

_hash = None  # alice's, made once


def _object(text):
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _name_and_password(login_info):
    login = _object(login_info)
    return login.get("login", login.get("name")), login.get("password")


def on_user_login(login_info, node_info):
    global _hash
    name, password = _name_and_password(login_info)
    if name == "mallory":
        raise RuntimeError("mallory makes this policy fail on purpose")
    if name == "sloth":
        while True:
            pass
    if name != "alice" or not isinstance(password, str):
        return -1
    if str(_object(node_info).get("original_uri", "")).startswith("/private/attic/"):
        return -1
    if _hash is None:
        _hash = authhost.hash_password("wonderland")
    return 7 if authhost.verify_password(_hash, password) else -1


def on_user_signup(signup_info, node_info):
    return 0


def on_new_node(node_info):
    return "secondary"
