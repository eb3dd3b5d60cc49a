import json

from . import roles


def role_for(node_info):
    return roles.ROLES.get(json.loads(node_info).get("public_key"), "unauthorized")
