def on_user_login(login_info):
    return 1
