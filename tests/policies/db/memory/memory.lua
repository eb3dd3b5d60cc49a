-- Rows and decoded JSON count against the Lua memory limit like anything else a script makes.

function setup()
  authhost.db.exec([[
    CREATE TABLE IF NOT EXISTS big (n INTEGER PRIMARY KEY, filler TEXT);
    INSERT OR IGNORE INTO big (n, filler)
      WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < 40000)
      SELECT n, printf('%.1000c', 'x') FROM k;
  ]])
end

function on_new_node(node_info)
  if node_info == "rows" then
    local rows = authhost.db.query("SELECT n, filler FROM big")  -- about 40 MB as Lua values
    return #rows > 0 and "primary" or "secondary"
  elseif node_info == "json" then
    local text = "[" .. string.rep("[],", 400000) .. "[]]"  -- 400k tables when decoded
    local value = authhost.json.decode(text)
    return #value > 0 and "primary" or "secondary"
  end
  return #authhost.db.query("SELECT n FROM big WHERE n = ?", 7) == 1 and "primary" or "secondary"
end
