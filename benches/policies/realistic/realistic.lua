-- Benchmark policy `realistic`, as the seed-style peer does it: look the user up, verify the
-- password against its argon2id hash (m=19456 KiB, t=2, p=1), return the id.

function setup()
  authhost.db.exec("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT UNIQUE, pw TEXT)")
  for i = 1, 20 do
    if #authhost.db.query("SELECT 1 AS found FROM users WHERE id = ?", i) == 0 then
      authhost.db.exec("INSERT INTO users (id, name, pw) VALUES (?, ?, ?)",
                       i, "user" .. i, authhost.hash_password("pw" .. i))
    end
  end
end

function on_user_login(login_info, node_info)
  local info = authhost.json.decode(login_info)
  local row = authhost.db.query("SELECT id, pw FROM users WHERE name = ?", info.name)[1]
  if row == nil then return -1 end
  if authhost.verify_password(row.pw, info.password) then return row.id end
  return -1
end
