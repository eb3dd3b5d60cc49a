-- The Lua half of a mixed set: the extension runs both languages side by side.
function on_new_node(node_info)
  local node = authhost.json.decode(node_info)
  if node.public_key == "pk-primary" then return "primary" end
  return "unauthorized"
end
