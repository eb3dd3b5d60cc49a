-- The stress test's policy: the test rewrites VERSION, and each version answers with its
-- own user id, so every answer tells which version gave it.
local VERSION = 0

function on_user_login(login_info, node_info)
  -- A little work, so that calls are still running while the file changes.
  local n = 0
  for i = 1, 2000 do
    n = n + i % 7
  end
  return 1000 + VERSION
end
