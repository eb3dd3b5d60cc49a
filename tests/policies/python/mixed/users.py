# The Python half of a mixed set: users.
import json


def on_user_login(login_info, node_info):
    return {"alice": 1, "bob": 2}.get(json.loads(login_info)["name"], -1)


def on_user_signup(signup_info, node_info):
    return 0
