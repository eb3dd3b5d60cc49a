-- Defines only on_new_node: user callbacks must fail closed.
function on_new_node(node_info) return "secondary" end
