-- The memory benchmark's policy: some code and some data, so that a leaked interpreter per
-- reload would show in the resident memory.
local names = {}
for i = 1, 2000 do
  names[i] = "user-" .. i
end

local function lookup(name)
  for i, n in ipairs(names) do
    if n == name then
      return i
    end
  end
  return 0
end

function on_user_login(login_info, node_info)
  local user = authhost.json.decode(login_info)
  local id = lookup(user.name or "")
  if id == 0 then
    return -1
  end
  return id
end

function on_new_node(node_info)
  return "secondary"
end
