# A Python login policy whose answer comes from a helper package in a subdirectory of the
# plugins directory (`ids/values.py`): a change inside the package must reload the set.
from ids.values import USER_ID


def on_user_login(login_info, node_info):
    return USER_ID
