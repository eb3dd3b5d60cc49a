-- The policy the embedding tests ask through every way in (Rust, SQL, C, the extension).
-- Decisions depend only on the arguments, so each test knows the answer it expects.

local USERS = { alice = 1, bob = 2 }
local NODES = { ["pk-primary"] = "primary", ["pk-secondary"] = "secondary", ["pk-async"] = "async" }

local function decode(text)
  local ok, value = pcall(authhost.json.decode, text)
  if ok and type(value) == "table" then return value end
  return nil
end

function on_user_login(login_info, node_info)
  local login, node = decode(login_info), decode(node_info)
  if not login or not node then return -3 end
  if login.name == "raises" then error("the policy raised on purpose") end
  if login.name == "spins" then while true do end end
  if login.name == "newcomer" then return 0 end
  if not NODES[node.public_key] then return -1 end
  return USERS[login.name] or -1
end

function on_user_signup(signup_info, node_info)
  local signup = decode(signup_info)
  if not signup or type(signup.name) ~= "string" then return -3 end
  if USERS[signup.name] then return -1 end  -- taken
  if signup.wants_id then return signup.wants_id end
  return 0
end

function on_new_node(node_info)
  local node = decode(node_info)
  if not node then return -3 end
  if node.public_key == "pk-bad-return" then return "Primary" end
  return NODES[node.public_key] or "unauthorized"
end
