-- Marks passed between workers through the database: proves they share one database.
-- {"op":"write","name":N} adds a mark; {"op":"read","name":N} answers "secondary" when the
-- mark exists, "unauthorized" otherwise; {"op":"hold","name":N,"until":U} adds N, then keeps
-- its worker busy until another request adds U.

function setup()
  authhost.db.exec("CREATE TABLE IF NOT EXISTS marks (name TEXT PRIMARY KEY)")
end

local function has(name)
  return #authhost.db.query("SELECT 1 AS found FROM marks WHERE name = ?", name) > 0
end

function on_new_node(node_info)
  local request = authhost.json.decode(node_info)
  if request.op == "read" then
    return has(request.name) and "secondary" or "unauthorized"
  end
  authhost.db.exec("INSERT OR IGNORE INTO marks (name) VALUES (?)", request.name)
  if request.op == "hold" then
    while not has(request["until"]) do end
  end
  return "primary"
end
