"""The Python twin of outside.lua: asks the URL it is given, 1 for a 200, -1 otherwise."""

import json

from authhost import http


def on_user_login(login_info, node_info):
    url = json.loads(login_info)["url"]
    answer = http.get(url)
    return 1 if answer.status == 200 else -1
