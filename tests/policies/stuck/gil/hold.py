"""Holds the GIL in C code for seconds: sum() over a range never returns to the bytecode
loop, so neither PolicyTimeout nor another thread gets in until it ends. 5e8 items take
about 3.4 s on a quiet machine, well past the tests' 1 s timeout and 100 ms grace (1e8
took 0.67 s, and on a quiet machine the call could end in time, with no replacement)."""


def on_user_login(login_info, node_info):
    return sum(range(500_000_000))
