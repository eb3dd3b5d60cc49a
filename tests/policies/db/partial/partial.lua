-- Policies that fail half-way through their writes: nothing they wrote may stay.

function setup()
  authhost.db.exec("CREATE TABLE IF NOT EXISTS items (name TEXT PRIMARY KEY)")
end

-- Inside transaction(fn): the error rolls back both inserts and is raised again.
function on_user_signup(signup_info, node_info)
  authhost.db.transaction(function()
    authhost.db.exec("INSERT INTO items (name) VALUES (?)", signup_info .. "-1")
    authhost.db.exec("INSERT INTO items (name) VALUES (?)", signup_info .. "-2")
    error("failed after two inserts")
  end)
  return 1
end

-- A transaction opened by hand and never closed: the host rolls it back after the call.
function on_user_login(login_info, node_info)
  authhost.db.exec("BEGIN")
  authhost.db.exec("INSERT INTO items (name) VALUES (?)", login_info)
  if node_info == "fail" then error("failed inside a hand-made transaction") end
  return 1  -- returns without COMMIT: still rolled back
end

-- How many items there are, as a node role: primary when none, secondary otherwise.
function on_new_node(node_info)
  local rows = authhost.db.query("SELECT count(*) AS n FROM items")
  if rows[1].n == 0 then return "primary" end
  return "secondary"
end
