-- The HTTP front's test policy (tests/it/http.rs); login.py is its Python twin.
--
-- on_user_login, by login_info:
--   {"id": n}                                  → n (the /v1 calls), after a busy wait of
--                                                "ms" milliseconds when given
--   {"login": "alice", "password": "wonderland"} → 7; alice with another password → -1
--   {"login": "newbie"}                        → 0 (new_user)
--   {"login": "boom"}                          → raises (error)
--   {"login": "show-login"}                    → raises with login_info as the message
--   {"login": "show-node"}                     → raises with node_info as the message
--   anything else                              → -1
function on_user_login(login_info, node_info)
  local login = authhost.json.decode(login_info)
  if type(login.ms) == "number" then
    local until_ = os.clock() + login.ms / 1000
    while os.clock() < until_ do end
  end
  if math.type(login.id) == "integer" then return login.id end
  if login.login == "alice" then
    if login.password == "wonderland" then return 7 end
    return -1
  end
  if login.login == "newbie" then return 0 end
  if login.login == "boom" then error("boom") end
  if login.login == "show-login" then error(login_info) end
  if login.login == "show-node" then error(node_info) end
  return -1
end

-- Signing up "taken" is refused; anyone else is a new user.
function on_user_signup(signup_info, node_info)
  local signup = authhost.json.decode(signup_info)
  if signup.name == "taken" then return -1 end
  return 0
end

-- A node is given the role it asks for.
function on_new_node(node_info)
  local node = authhost.json.decode(node_info)
  return node.role or "unauthorized"
end
