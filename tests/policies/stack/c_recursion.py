# Recursion through C: CPython counts C recursion (repr, json.dumps, a special method that
# calls itself) against the recursion limit, so a limit set high lets it overflow a
# worker's stack and kill the whole process. `login_info` names the route, `node_info` the
# recursion limit to set first ("" leaves it); "plain" answers 7.
import json
import sys


def nested_list(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


class Attribute:
    def __getattr__(self, name):
        return getattr(Attribute(), name)


class Formatted:
    def __format__(self, spec):
        return format(Formatted(), spec)


class Sized:
    def __len__(self):
        return len(Sized())


class Shown:
    def __repr__(self):
        return repr(Shown())


ROUTES = {
    "repr_list": lambda: repr(nested_list(200_000)),
    "json_dumps": lambda: json.dumps(nested_list(200_000)),
    "getattr": lambda: Attribute().x,
    "format": lambda: format(Formatted(), ""),
    "len": lambda: len(Sized()),
    "repr_method": lambda: repr(Shown()),
}


def recurse(n):
    return recurse(n + 1) + 1


ROUTES["python_recursion"] = lambda: recurse(0)


def on_user_login(login_info, node_info):
    if node_info:
        sys.setrecursionlimit(int(node_info))
    route = ROUTES.get(login_info)
    if route:
        route()
    return 7
