-- Needs no GIL: answered by a fresh worker while a stuck Python thread holds it.
function on_new_node(node_info)
  return "secondary"
end
