-- The policy behind the HTTP front in tests/it/nginx.rs, prometheus.rs and websocket.rs
-- (login.py is its Python twin).
-- login_info is what the front made of the client's credentials: {"login":…,"password":…}
-- from Basic auth (/auth/request) or /auth's parameters, or the JSON text a client posted
-- to /v1/user_login or sent with `auth` ({"name":…} works too).
--   alice / wonderland      user 7 (checked against an argon2id hash, as a real policy does)
--   alice / anything else   not authorized
--   alice at /private/attic/… (the X-Original-URI nginx passes, node_info.original_uri)
--                           not authorized
--   mallory                 the policy raises: error
--   sloth                   runs until its timeout: error

local hash -- alice's, made once per worker

local function name_and_password(login_info)
  local ok, login = pcall(authhost.json.decode, login_info)
  if not ok or type(login) ~= "table" then return nil end
  return login.login or login.name, login.password
end

function on_user_login(login_info, node_info)
  local name, password = name_and_password(login_info)
  if name == "mallory" then error("mallory makes this policy fail on purpose") end
  if name == "sloth" then
    while true do end
  end
  if name ~= "alice" or type(password) ~= "string" then return -1 end
  local ok, node = pcall(authhost.json.decode, node_info)
  if ok and type(node) == "table" and type(node.original_uri) == "string"
      and node.original_uri:find("^/private/attic/") then
    return -1
  end
  hash = hash or authhost.hash_password("wonderland")
  if authhost.verify_password(hash, password) then return 7 end
  return -1
end

function on_user_signup(signup_info, node_info)
  return 0
end

function on_new_node(node_info)
  return "secondary"
end
