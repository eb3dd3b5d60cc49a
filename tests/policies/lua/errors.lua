-- Fails in the ways a policy can fail, chosen by the first argument.
local function nested()
  local user = nil
  return user.name  -- line 4: attempt to index a nil value
end

function on_user_login(which, node_info)
  if which == "raise" then
    error("boom: the user store is down")  -- line 9
  elseif which == "index_nil" then
    return nested()
  elseif which == "raise_table" then
    error({code = 17})
  elseif which == "bad_json" then
    return authhost.json.decode("{not json")  -- line 15
  end
  return 1
end
