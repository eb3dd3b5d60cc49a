# A save with a syntax error on line 3.
def on_new_node(node_info):
    return "primary" if
