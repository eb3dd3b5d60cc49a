-- A policy author's typo: `on_user_logon` for `on_user_login`. Loaded as it is, the set
-- would define no login callback and refuse every login without a hint.
local ALICE = 1

function on_user_logon(login_info, node_info)
  local login = authhost.json.decode(login_info)
  if login.name == "alice" then
    return ALICE
  end
  return -1
end
