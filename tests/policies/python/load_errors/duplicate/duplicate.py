def on_new_node(node_info):
    return "primary"
