# Every new device joins as a primary node.
def on_new_node(node_info):
    return "primary"
