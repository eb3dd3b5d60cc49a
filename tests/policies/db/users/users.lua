-- Users with argon2id hashes: signup refuses duplicates and returns the new id, login
-- verifies the password (argon2 or bcrypt hashes, e.g. users imported from elsewhere).

function setup()
  authhost.db.exec([[
    CREATE TABLE IF NOT EXISTS users (
      id INTEGER PRIMARY KEY,
      name TEXT NOT NULL UNIQUE,
      password_hash TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS signups (
      user_id INTEGER NOT NULL REFERENCES users(id),
      node TEXT NOT NULL
    );
  ]])
end

function on_user_signup(signup_info, node_info)
  local signup = authhost.json.decode(signup_info)
  local node = authhost.json.decode(node_info)
  local hash = authhost.hash_password(signup.password)
  return authhost.db.transaction(function()
    local added = authhost.db.exec(
      "INSERT INTO users (name, password_hash) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
      signup.name, hash)
    if added == 0 then return -1 end
    local id = authhost.db.last_insert_id()
    authhost.db.exec("INSERT INTO signups (user_id, node) VALUES (?, ?)", id, node.public_key)
    return id
  end)
end

function on_user_login(login_info, node_info)
  local login = authhost.json.decode(login_info)
  local rows = authhost.db.query("SELECT id, password_hash FROM users WHERE name = ?", login.name)
  local user = rows[1]
  if not user then return -1 end
  if authhost.verify_password(user.password_hash, login.password) then return user.id end
  return -1
end
