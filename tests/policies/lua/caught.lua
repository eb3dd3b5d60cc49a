-- Catches an error with pcall and logs its message: the log must name this file, however
-- long its path (Lua's own message names the short chunk name it was loaded under).
function on_user_login(login_info, node_info)
  local ok, message = pcall(function() error("the user store is down") end)  -- line 4
  authhost.log.warn("caught: " .. message)
  print("printed: " .. message)
  return 1
end
