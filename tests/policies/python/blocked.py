# Blocks in native code, where no Python-level check can stop it: reading a FIFO waits, in
# the kernel, until a writer opens it and writes. login_info is the FIFO's path.


def on_user_login(login_info, node_info):
    with open(login_info) as fifo:
        return int(fifo.read())
