# Answers logins with 1 when it runs on the interpreter of the program that loaded authhost
# (which set builtins.HOST_MARK before loading), and 2 on an interpreter of authhost's own.
import builtins


def on_user_login(login_info, node_info):
    return 1 if getattr(builtins, "HOST_MARK", None) == "set-by-the-caller" else 2
