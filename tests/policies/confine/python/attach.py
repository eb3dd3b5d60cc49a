"""Python policies are trusted code: their SQL is not confined."""
import authhost


def on_user_login(login_info, node_info):
    authhost.db.exec("ATTACH DATABASE ? AS other", [login_info])
    authhost.db.exec("CREATE TABLE other.t(x)")
    authhost.db.exec("DETACH DATABASE other")
    return 1
