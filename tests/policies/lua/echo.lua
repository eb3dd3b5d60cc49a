-- Proves arguments arrive intact: both arguments must be equal, and the answer is their
-- length in bytes (0 for the empty string: new_user).
function on_user_login(login_info, node_info)
  if login_info ~= node_info then return -1 end
  return #login_info
end

-- The answer is the number the caller sent, so concurrent callers can check theirs.
function on_user_signup(signup_info, node_info)
  return math.tointeger(tonumber(signup_info)) or -3
end

function on_new_node(node_info)
  local node = authhost.json.decode(node_info)
  return node.role
end
