-- An example policy to start from: a node allowlist by public key, and login rules.
--
-- authhost calls these functions on its worker threads. Arguments are the strings the
-- secondary node sent; decode them with authhost.json.decode. Return values (contract §2):
--   user callbacks: a user id (>= 1), 0 (new user), -1 (not authorized), -3 (error)
--   on_new_node:    "primary", "secondary", "async", "unauthorized" (or -1), -3 (error)
-- Anything else is an error, and an error never lets anyone in.

-- Devices allowed to join, by public key, and the role each gets.
local NODES = {
  ["k"]         = "secondary",
  ["pk-office"] = "primary",
  ["pk-laptop"] = "secondary",
  ["pk-backup"] = "async",
}

-- Known users and their ids. A real policy keeps these in the database (authhost.db).
local USERS = { alice = 1, bob = 2 }
local BLOCKED = { mallory = true }

local function decode(text)
  local ok, value = pcall(authhost.json.decode, text)
  if ok and type(value) == "table" then return value end
  return nil
end

function on_new_node(node_info)
  local node = decode(node_info)
  if not node or type(node.public_key) ~= "string" then
    authhost.log.warn("new node without a public key refused")
    return "unauthorized"
  end
  return NODES[node.public_key] or "unauthorized"
end

function on_user_login(login_info, node_info)
  local login, node = decode(login_info), decode(node_info)
  if not login or not node then return -3 end
  if type(login.name) ~= "string" or BLOCKED[login.name] then return -1 end
  if not NODES[node.public_key] then return -1 end  -- only from known devices
  return USERS[login.name] or -1
end

function on_user_signup(signup_info, node_info)
  local signup = decode(signup_info)
  if not signup or type(signup.name) ~= "string" then return -3 end
  if not signup.name:match("^[%w_.-]+$") or #signup.name > 64 then return -1 end
  if BLOCKED[signup.name] then return -1 end
  if USERS[signup.name] then return -1 end  -- taken
  return 0  -- let the database choose the new user's id
end
