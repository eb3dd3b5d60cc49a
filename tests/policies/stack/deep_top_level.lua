-- A plugin whose top level recurses through C (string.gsub with a replacement function
-- that calls gsub again) until Lua's C-call limit: the load fails with that error, on
-- whichever thread asked for the load.
local function replace(c)
  return (string.gsub("a", "a", replace))
end
string.gsub("a", "a", replace)

function on_user_login(login_info, node_info)
  return 8
end
