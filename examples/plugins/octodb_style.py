# A policy written the way OctoDB's synchronous-mode docs write one (auth-sync.md), in
# Python 3. The three callbacks work unchanged under authhost:
#
#     authhost check --plugins examples/plugins/octodb_style.py
#     authhost call new_node '{"public_key":"pk-office","address":"10.0.0.7"}' \
#         --plugins examples/plugins/octodb_style.py
#     authhost call user_login '{"name":"alice","password":"wonderland"}' \
#         '{"public_key":"pk-office"}' --plugins examples/plugins/octodb_style.py
#
# and, run as a program, the same file registers them with OctoDB as its docs show.
#
# Returns (contract §2):
#   on_user_signup / on_user_login: <user_id>, 0 (let the system choose), -1 (not
#   authorized), -3 (general error)
#   on_new_node: "primary" | "secondary" | "async" | "unauthorized" (or -1), -3
#
# Deployable as it is: passwords are checked against argon2id hashes (never compared or
# stored in clear), logins are throttled, and nothing a caller sends is printed or logged
# (stdout and the log are read by more people than the user database).
import json

try:
    import authhost
    from authhost import limits
    from authhost import verify_password
except ImportError:
    # Run as a program by OctoDB itself (below): argon2-cffi checks the same PHC strings.
    # There is no authhost.limits there: throttle in front of OctoDB instead.
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    authhost = limits = None

    def verify_password(password_hash, password):
        try:
            return PasswordHasher().verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

# Devices allowed to join, by public key, and the role each gets.
NODES = {
    "pk-office": "primary",
    "pk-laptop": "secondary",
    "pk-backup": "async",
}

# Known users: id and argon2id hash of the password (authhost.hash_password makes one).
# alice's password is "wonderland", bob's "builder of bridges". A real policy keeps these in
# the database (see plugins/policy.lua or examples/plugins/python_db).
USERS = {
    "alice": (1, "$argon2id$v=19$m=19456,t=2,p=1$aJU96vMyuOGXQW7yP/TYBg$"
                 "LFoGRX3sW+NXfUosHvyR150L62U6JuGOb9C/91s/kPU"),
    "bob": (2, "$argon2id$v=19$m=19456,t=2,p=1$1hjX/sJv+xHllUNnOHFxDw$"
               "M8il2lXPdD7wmoH1xqjgfszzFP8EMTXYnJcTEW64CkY"),
}
BLOCKED = {"mallory"}

# An unknown name still costs one verification (against alice's hash; only the time it
# takes counts), so response times do not tell which names exist.
DUMMY_HASH = USERS["alice"][1]

# At most 10 attempts per name without a success, and 100 per node, in any 15 minutes (see
# plugins/README.md for why).
NAME_ATTEMPTS, NODE_ATTEMPTS, THROTTLE_WINDOW = 10, 100, 15 * 60


def decode(text):
    """The JSON object in `text`, or None."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def within_limits(name, public_key):
    """Records this attempt; False once the name or the node is over its limit."""
    if limits is None:
        return True
    name_ok = limits.hit("login-name:" + name, NAME_ATTEMPTS, THROTTLE_WINDOW)
    node_ok = limits.hit("login-node:" + public_key, NODE_ATTEMPTS, THROTTLE_WINDOW)
    return name_ok and node_ok


def check_user_signup(signup, node):
    if signup is None or node is None:
        return -3  # general error
    # Sign-ups are closed here: the administrator adds users to USERS with their hash. For
    # open sign-ups, stored in the database, start from plugins/policy.lua.
    return -1  # not authorized


def check_user_login(login, node):
    if login is None or node is None:
        return -3
    name, password = login.get("name"), login.get("password")
    if not isinstance(name, str) or not isinstance(password, str):
        return -1
    public_key = node.get("public_key")
    if name in BLOCKED or public_key not in NODES:
        return -1
    # Before any hashing: a throttled guess costs the host no password check.
    if not within_limits(name, public_key):
        if authhost is not None:
            authhost.log.warn("login throttled: too many attempts for this name or node")
        return -1
    user = USERS.get(name)
    if user is None:
        verify_password(DUMMY_HASH, password)
        return -1
    user_id, password_hash = user
    if not verify_password(password_hash, password):
        return -1
    if limits is not None:
        limits.reset("login-name:" + name)
    return user_id


def check_new_node(node):
    if node is None:
        return -3
    return NODES.get(node.get("public_key"), "unauthorized")


# called by the worker thread (nothing here prints or logs what the caller sent):

def on_user_signup(signup_info, node_info):
    return check_user_signup(decode(signup_info), decode(node_info))


def on_user_login(login_info, node_info):
    return check_user_login(decode(login_info), decode(node_info))


def on_new_node(node_info):
    return check_new_node(decode(node_info))


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
