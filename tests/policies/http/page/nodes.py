# The other plugin of the status page test (a Python one with one callback).


def on_new_node(node_info):
    return "async"
