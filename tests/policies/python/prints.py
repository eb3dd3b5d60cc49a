# Writes to stdout and stderr in every way it can: all of it must land in the host's log.
import sys

import authhost

print("prints.py: loading")


def on_user_login(login_info, node_info):
    print("login from", login_info)
    sys.stdout.write("written to sys.stdout\n")
    sys.stdout.flush()
    sys.stderr.write("written to sys.stderr\n")
    print("printed to stderr", file=sys.stderr)
    authhost.log.info("logged with authhost.log.info")
    authhost.log.warn("logged with authhost.log.warn", 42)
    authhost.log.error("logged with authhost.log.error")
    print("no newline", end="")
    return 42
