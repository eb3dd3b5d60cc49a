function on_new_node(node_info) return "secondary" end
