-- Sessions, limits and state as a policy uses them, for tests/it/sessions.rs.
-- Logins: the password "right" is user 42. Each password check is counted in `checks`, so
-- the tests can see that a throttled login checks nothing.

function setup()
  authhost.db.exec([[
    CREATE TABLE IF NOT EXISTS checks (n INTEGER NOT NULL);
    INSERT INTO checks SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM checks);
  ]])
end

function on_user_login(login_info, node_info)
  local login = authhost.json.decode(login_info)
  if not authhost.limits.hit("name:" .. login.name, 3, 60) then
    return -1 -- throttled: no password check
  end
  authhost.db.exec("UPDATE checks SET n = n + 1")
  if login.password == "right" then
    authhost.limits.reset("name:" .. login.name)
    return 42
  end
  return -1
end

-- {"put": KEY} stores a nonce, {"take": KEY} spends it (7 when this call got it, -1 if not),
-- {"cycle": true} opens, checks and closes a session inside the script.
function on_user_signup(signup_info)
  local s = authhost.json.decode(signup_info)
  if s.put then
    authhost.state.put(s.put, "nonce", 60)
    return authhost.state.get(s.put) == "nonce" and 0 or -3
  elseif s.take then
    return authhost.state.take(s.take) == "nonce" and 7 or -1
  elseif s.cycle then
    local token = authhost.sessions.open(9, 30)
    if authhost.sessions.check(token) ~= 9 then return -3 end
    if not authhost.sessions.close(token) then return -3 end
    if authhost.sessions.check(token) ~= nil then return -3 end
    return 9
  end
  return -3
end

-- A node is let in as primary when it brings a live session token of user 42.
function on_new_node(node_info)
  local node = authhost.json.decode(node_info)
  if type(node.token) == "string" and authhost.sessions.check(node.token) == 42 then
    return "primary"
  end
  return "unauthorized"
end
