-- An example policy to start from: users with argon2id password hashes, and a node
-- allowlist, both kept in the application database (authhost.db, or --db PATH).
--
-- authhost calls these functions on its worker threads. Arguments are the strings the
-- secondary node sent; decode them with authhost.json.decode. Return values (contract §2):
--   user callbacks: a user id (>= 1), 0 (new user), -1 (not authorized), -3 (error)
--   on_new_node:    "primary", "secondary", "async", "unauthorized" (or -1), -3 (error)
-- Anything else, and any error raised, is an error, and an error never lets anyone in.

local db = authhost.db

-- Runs once each time the plugins are (re)loaded, before they go live: create the tables
-- and seed them. Every statement is idempotent, so reloading changes nothing.
function setup()
  db.exec([[
    CREATE TABLE IF NOT EXISTS users (
      id            INTEGER PRIMARY KEY,
      name          TEXT NOT NULL UNIQUE,
      password_hash TEXT NOT NULL,
      created_at    INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS nodes (
      public_key TEXT PRIMARY KEY,
      role       TEXT NOT NULL CHECK (role IN ('primary', 'secondary', 'async')),
      note       TEXT
    );
    CREATE TABLE IF NOT EXISTS events (
      id      INTEGER PRIMARY KEY,
      kind    TEXT NOT NULL,
      user_id INTEGER REFERENCES users(id),
      node    TEXT,
      at      INTEGER NOT NULL
    );
  ]])
  -- The devices allowed to join, by public key, and the role each gets.
  local allowed = {
    { "pk-office", "primary",   "the office server" },
    { "pk-laptop", "secondary", "alice's laptop" },
    { "pk-backup", "async",     "the off-site backup" },
  }
  for _, node in ipairs(allowed) do
    db.exec("INSERT OR IGNORE INTO nodes (public_key, role, note) VALUES (?, ?, ?)",
            node[1], node[2], node[3])
  end
  -- A first user, alice (password "wonderland"), hashed only when she is not there yet.
  if #db.query("SELECT 1 AS found FROM users WHERE name = ?", "alice") == 0 then
    db.exec("INSERT OR IGNORE INTO users (name, password_hash, created_at) VALUES (?, ?, ?)",
            "alice", authhost.hash_password("wonderland"), os.time())
  end
end

local function decode(text)
  local ok, value = pcall(authhost.json.decode, text)
  if ok and type(value) == "table" then return value end
  return nil
end

-- The role of an allowed node, or nil.
local function node_role(public_key)
  if type(public_key) ~= "string" then return nil end
  local rows = db.query("SELECT role FROM nodes WHERE public_key = ?", public_key)
  return rows[1] and rows[1].role
end

-- Verifying against a dummy hash when the user does not exist makes "no such user" take
-- as long as "wrong password", so response times do not tell which names exist.
local dummy_hash
local function spend_a_verify(password)
  dummy_hash = dummy_hash or authhost.hash_password("not a real password")
  authhost.verify_password(dummy_hash, password)
end

function on_new_node(node_info)
  local node = decode(node_info)
  if not node or type(node.public_key) ~= "string" then
    authhost.log.warn("a node without a public key was refused")
    return "unauthorized"
  end
  return node_role(node.public_key) or "unauthorized"
end

-- Login throttling (see plugins/README.md for why these numbers): at most 10 attempts per
-- name without a success, and 100 attempts per node, in any 15 minutes. The counts live in
-- the database, so every authhost process on it shares them.
local NAME_ATTEMPTS, NODE_ATTEMPTS, THROTTLE_WINDOW = 10, 100, 15 * 60

-- Records this attempt against the name and the node; false once either is over its limit.
local function within_limits(name, public_key)
  local name_ok = authhost.limits.hit("login-name:" .. name, NAME_ATTEMPTS, THROTTLE_WINDOW)
  local node_ok = authhost.limits.hit("login-node:" .. public_key, NODE_ATTEMPTS, THROTTLE_WINDOW)
  return name_ok and node_ok
end

function on_user_login(login_info, node_info)
  local login, node = decode(login_info), decode(node_info)
  if not login or not node then return -3 end
  if type(login.name) ~= "string" or type(login.password) ~= "string" then return -1 end
  if not node_role(node.public_key) then return -1 end  -- only through allowed nodes
  -- Before any lookup or hashing: a throttled guess costs the host no password check.
  if not within_limits(login.name, node.public_key) then
    authhost.log.warn("login throttled: too many attempts for this name or node")
    return -1
  end
  local user = db.query("SELECT id, password_hash FROM users WHERE name = ?", login.name)[1]
  if not user then
    spend_a_verify(login.password)
    return -1
  end
  if not authhost.verify_password(user.password_hash, login.password) then return -1 end
  authhost.limits.reset("login-name:" .. login.name)
  return user.id
end

function on_user_signup(signup_info, node_info)
  local signup, node = decode(signup_info), decode(node_info)
  if not signup or not node then return -3 end
  local name, password = signup.name, signup.password
  if type(name) ~= "string" or not name:match("^[%w_.-]+$") or #name > 64 then return -1 end
  if type(password) ~= "string" or #password < 8 then return -1 end
  if not node_role(node.public_key) then return -1 end
  -- Hash before taking the write lock: argon2id takes tens of milliseconds.
  local hash = authhost.hash_password(password)
  return db.transaction(function()
    local added = db.exec([[INSERT INTO users (name, password_hash, created_at) VALUES (?, ?, ?)
                            ON CONFLICT (name) DO NOTHING]], name, hash, os.time())
    if added == 0 then return -1 end  -- the name is taken
    local id = db.last_insert_id()
    db.exec("INSERT INTO events (kind, user_id, node, at) VALUES ('signup', ?, ?, ?)",
            id, node.public_key, os.time())
    return id
  end)
end
