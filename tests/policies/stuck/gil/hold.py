"""Holds the GIL in C code for seconds: sum() over a range never returns to the bytecode
loop, so neither PolicyTimeout nor another thread gets in until it ends."""


def on_user_login(login_info, node_info):
    return sum(range(100_000_000))
