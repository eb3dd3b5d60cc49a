# A Python login policy whose answer comes from a helper module beside it in the plugins
# directory (`_ids.py`; a leading underscore keeps it from being loaded as a plugin).
import _ids


def on_user_login(login_info, node_info):
    return _ids.USER_ID
