# Returns whatever the test asks for by name: one row of the decision mapping per key
# (contract §2). The login_info / node_info argument is the key.
import math

USER_RETURNS = {
    "42": 42,
    "max": 2**63 - 1,
    "zero": 0,
    "minus1": -1,
    "minus3": -3,
    "float42": 42.0,
    "float_minus1": -1.0,
    "float42.5": 42.5,
    "nan": math.nan,
    "inf": math.inf,
    "true": True,
    "false": False,
    "2**63": 2**63,
    "-2**63-1": -(2**63) - 1,
    "minus2": -2,
    "minus4": -4,
    "str42": "42",
    "bytes1": b"1",
    "none": None,
    "dict": {"user_id": 42},
    "tuple": (42, "extra"),
    "list": [42],
}

NODE_RETURNS = {
    "primary": "primary",
    "secondary": "secondary",
    "async": "async",
    "unauthorized": "unauthorized",
    "minus1": -1,
    "minus3": -3,
    "Primary": "Primary",
    "admin": "admin",
    "none": None,
    "one": 1,
    "true": True,
    "bytes": b"primary",
}


def on_user_login(login_info, node_info):
    return USER_RETURNS[login_info]


def on_user_signup(signup_info, node_info):
    # The same table, to show both user callbacks map alike.
    return USER_RETURNS[signup_info]


def on_new_node(node_info):
    return NODE_RETURNS[node_info]
