# A syntax error on line 3.
def on_user_login(login_info, node_info):
    return (42

