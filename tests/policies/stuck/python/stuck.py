"""Every way a Python policy could keep its worker past the deadline; login_info names the
form. Anything else is innocent (7)."""
import socket
import sys
import time


class Endless(Exception):
    def __str__(self):
        while True:
            pass


class Heavy:
    def __del__(self):
        while True:
            pass


def deep(n):
    # Deep, but within the highest limit authhost allows (5000): a higher one is refused.
    if n < 4_500:
        return deep(n + 1)
    while True:
        pass


def sleeps():
    # Native code, GIL released: nothing interrupts it; its worker is replaced.
    time.sleep(3)
    return 1


def reads():
    # A socket read with nothing to read: native code too.
    mine, theirs = socket.socketpair()
    mine.settimeout(3)
    try:
        return mine.recv(1)
    finally:
        mine.close()
        theirs.close()


def raises_endless():
    # The host reads the message (str()) to describe the error.
    raise Endless()


def returns_heavy():
    # Freed by the host after the call returns.
    return Heavy()


def recurses():
    sys.setrecursionlimit(5_000)
    return deep(0)


FORMS = {
    "sleep": sleeps,
    "socket": reads,
    "str": raises_endless,
    "del": returns_heavy,
    "recursion": recurses,
}


def on_user_login(login_info, node_info):
    form = FORMS.get(login_info)
    if form:
        return form()
    return 7
