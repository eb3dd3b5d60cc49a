USERS = {"alice": 1, "bob": 2}
