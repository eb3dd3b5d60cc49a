on_user_login = 42
