# The trivial policy of the benchmarks: the cost of a call is all host and interpreter.
def on_user_login(login_info, node_info):
    return 42
