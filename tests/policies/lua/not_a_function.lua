-- A callback name bound to something that cannot be called is a load error.
on_user_login = 42
