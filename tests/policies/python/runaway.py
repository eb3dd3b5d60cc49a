# Policies that do not return on their own: the deadline stops them.
import time


def on_user_login(login_info, node_info):
    if login_info == "loop":
        while True:
            pass
    if login_info.startswith("busy:"):
        # Busy for about the given number of milliseconds, then answer.
        until = time.monotonic() + int(login_info[5:]) / 1000
        while time.monotonic() < until:
            pass
        return 7
    return int(login_info)


def on_new_node(node_info):
    # A loop that keeps going after ordinary errors does not catch the timeout: it derives
    # from BaseException, not Exception.
    while True:
        try:
            work()
        except Exception:
            pass


def on_user_signup(signup_info, node_info):
    # A bare `except:` does catch it, once; the host raises it again until the call ends.
    try:
        while True:
            pass
    except:  # noqa: E722
        pass
    while True:
        pass


def work():
    for _ in range(1000):
        pass
