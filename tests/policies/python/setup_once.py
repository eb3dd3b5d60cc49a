# setup() runs once per load of the set, whatever the number of workers.
import sys

runs_seen = 0


def setup():
    global runs_seen
    sys.authhost_test_setup_runs = getattr(sys, "authhost_test_setup_runs", 0) + 1
    runs_seen = sys.authhost_test_setup_runs


def on_user_login(login_info, node_info):
    return runs_seen
