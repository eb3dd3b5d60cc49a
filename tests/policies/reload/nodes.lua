-- Every new device joins as a secondary node.
function on_new_node(node_info)
  return "secondary"
end
