def setup():
    raise RuntimeError("the table could not be created")


def on_user_login(login_info, node_info):
    return 1
