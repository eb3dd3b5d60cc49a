-- Benchmark policy `lookup`, as the seed-style peer does it (shared/bench/peer_seed.py):
-- decode login_info, one indexed SELECT by name, return the id.

function setup()
  authhost.db.exec("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT UNIQUE, pw TEXT)")
  for i = 1, 20 do
    authhost.db.exec("INSERT OR IGNORE INTO users (id, name, pw) VALUES (?, ?, ?)", i, "user" .. i, "pw" .. i)
  end
end

function on_user_login(login_info, node_info)
  local info = authhost.json.decode(login_info)
  local row = authhost.db.query("SELECT id FROM users WHERE name = ?", info.name)[1]
  if row == nil then return -1 end
  return row.id
end
