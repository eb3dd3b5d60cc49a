-- Returns the message of an error it caught, instead of a decision: the answer is a wrong
-- return, and its message must name this file and the callback, not the short chunk name
-- Lua's own message carries.
local function caught()
  local ok, message = pcall(function() error("the user store is down") end)  -- line 5
  return message
end

function on_user_login(login_info, node_info)
  return caught()
end

function on_new_node(node_info)
  return caught()
end
