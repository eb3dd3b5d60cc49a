-- A query that never ends, called bare and under pcall: both must end in a timeout.
local ENDLESS = [[
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) AS c FROM n
]]

function on_new_node(node_info)
  if node_info == "quick" then return "primary" end
  if node_info == "pcall" then
    local ok = pcall(authhost.db.query, ENDLESS)
    return ok and "primary" or "secondary"  -- neither may be reached
  end
  authhost.db.query(ENDLESS)
  return "primary"
end

function on_user_login(login_info, node_info)
  return authhost.db.query("SELECT * FROM no_such_table")[1].id
end
