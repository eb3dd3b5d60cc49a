-- The Lua half of a mixed set: nodes.
function on_new_node(node_info)
  local node = authhost.json.decode(node_info)
  if node.public_key == "pk-office" then return "primary" end
  return "unauthorized"
end
