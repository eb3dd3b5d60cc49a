# A policy written the way OctoDB's synchronous-mode docs write one (auth-sync.md), in
# Python 3. The three callbacks work unchanged under authhost:
#
#     authhost check --plugins examples/plugins/octodb_style.py
#     authhost call new_node '{"public_key":"pk-office","address":"10.0.0.7"}' \
#         --plugins examples/plugins/octodb_style.py
#
# and, run as a program, the same file registers them with OctoDB as its docs show.
#
# Returns (contract §2):
#   on_user_signup / on_user_login: <user_id>, 0 (let the system choose), -1 (not
#   authorized), -3 (general error)
#   on_new_node: "primary" | "secondary" | "async" | "unauthorized" (or -1), -3
import json

# Devices allowed to join, by public key, and the role each gets.
NODES = {
    "pk-office": "primary",
    "pk-laptop": "secondary",
    "pk-backup": "async",
}

# Known users and their ids. A real policy keeps these in the database.
USERS = {"alice": 1, "bob": 2}
BLOCKED = {"mallory"}


def check_user_signup(signup_info, node):
    try:
        signup = json.loads(signup_info)
    except ValueError:
        return -3  # general error
    name = signup.get("name") if isinstance(signup, dict) else None
    if not isinstance(name, str) or not name:
        return -3
    if name in BLOCKED or name in USERS or node.get("public_key") not in NODES:
        return -1  # not authorized
    return 0  # choose any user id


def check_user_login(login_info, node):
    try:
        login = json.loads(login_info)
    except ValueError:
        return -3
    name = login.get("name") if isinstance(login, dict) else None
    if name in BLOCKED or node.get("public_key") not in NODES:
        return -1
    return USERS.get(name, -1)


def check_new_node(node):
    return NODES.get(node.get("public_key"), "unauthorized")


# called by the worker thread:

def on_user_signup(signup_info, node_info):
    print("on_user_signup signup_info:", signup_info, "node_info:", node_info)
    node = json.loads(node_info)
    user_id = check_user_signup(signup_info, node)
    return user_id


def on_user_login(login_info, node_info):
    print("on_user_login login_info:", login_info, "node_info:", node_info)
    node = json.loads(node_info)
    user_id = check_user_login(login_info, node)
    return user_id


def on_new_node(node_info):
    print("on_new_node", node_info)
    node = json.loads(node_info)
    node_type = check_new_node(node)
    return node_type


if __name__ == "__main__":
    # OctoDB's own synchronous mode, as in its docs. authhost never runs this part: it loads
    # the file as a module, not as the main program.
    import time

    import octodb as sqlite3

    db = sqlite3.connect("file:app.db?node=primary&bind=tcp://0.0.0.0:1234&auth=user")
    while True:
        result = db.cursor().execute("PRAGMA sync_status").fetchone()
        status = json.loads(result[0])
        if status["db_is_ready"]:
            break
        time.sleep(0.250)
    db.register_function("user_signup", 2, on_user_signup)
    db.register_function("user_login", 2, on_user_login)
    db.register_function("new_node", 1, on_new_node)
    while True:
        time.sleep(0.5)
