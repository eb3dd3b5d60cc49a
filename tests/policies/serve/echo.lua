-- Answers from the request itself, so that a test can tell every answer apart:
--   on_user_login:  login_info {"id": n} → user id n (anything else → -1)
--   on_user_signup: signup_info {"name": "taken"} → -1, otherwise 0 (new user)
--   on_new_node:    node_info {"role": "primary"|"secondary"|"async"} → that role
function on_user_login(login_info, node_info)
  local ok, login = pcall(authhost.json.decode, login_info)
  if ok and type(login) == "table" and math.type(login.id) == "integer" then
    return login.id
  end
  return -1
end

function on_user_signup(signup_info, node_info)
  local ok, signup = pcall(authhost.json.decode, signup_info)
  if ok and type(signup) == "table" and signup.name == "taken" then return -1 end
  return 0
end

function on_new_node(node_info)
  local ok, node = pcall(authhost.json.decode, node_info)
  if ok and type(node) == "table" then return node.role or "unauthorized" end
  return "unauthorized"
end
