# Imports helper modules that sit in the plugins directory: a module (_names.py, not a
# plugin because of its leading underscore) and a package (rules/).
import _names
from rules import role_for


def on_user_login(login_info, node_info):
    return _names.USERS.get(login_info, -1)


def on_new_node(node_info):
    return role_for(node_info)
