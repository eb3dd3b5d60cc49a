"""Holds the GIL while blocked, for as long as the test wants: a C function called through
ctypes.PyDLL keeps the GIL (a CDLL call would let it go), so neither PolicyTimeout nor any
other Python thread gets in until read(2) returns. login_info is the number of one end of a
socket pair the test made in this process; the call ends when the test writes a byte to the
other end.
(A long sum() held the GIL too, but for a time that no deadline and no wait could both fit
on a loaded machine: too short, and it ended before the worker was replaced; too long, and
the test gave up waiting for it.)"""
import ctypes

LIBC = ctypes.PyDLL(None)


def on_user_login(login_info, node_info):
    byte = ctypes.create_string_buffer(1)
    LIBC.read(int(login_info), byte, 1)
    return 7
