-- Logins checked by an upstream auth backend first, with a local cache when it is down: the
-- flow of Flussonic Watcher's external auth, from the policy side.
--
-- The backend answers GET <prefix>?login=NAME&password=PASSWORD with 200 (allowed), 403
-- (wrong password) or 404 (unknown user). Run with the backend's URL as the first (or only)
-- --upstream prefix, e.g. `authhost serve --upstream http://10.0.0.5:8080/auth`.
--   200                        -> store an argon2id hash of the password (replacing the old
--                                 one) and allow
--   403 / 404                  -> refuse; 404 also forgets the cached hash, and a 403 for a
--                                 password the cache would take forgets it (it is stale)
--   unreachable, 5xx, too slow -> verify against the cached hash (a fallback, logged and
--                                 counted in `status`)
-- A user refused by a reachable backend is never let in from the cache.
-- Nothing logged holds the password: the log names the user and the reason, and
-- authhost.http's errors show the URL without its query (where this backend takes the
-- password). The backend's own access log sees the query, as its API requires.

local db = authhost.db
local BUDGET_MS = 1000 -- how long the backend may take before the cache answers

function setup()
  db.exec([[CREATE TABLE IF NOT EXISTS upstream_users (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL
  )]])
end

local function escape(text)
  return (text:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function cached(name)
  return db.query("SELECT id, password_hash FROM upstream_users WHERE name = ?", name)[1]
end

local function from_cache(name, password, why)
  authhost.http.fallback()
  authhost.log.warn("upstream unavailable (" .. why .. "): checking " .. name .. " against the local cache")
  local user = cached(name)
  if user and authhost.verify_password(user.password_hash, password) then
    authhost.log.info("login of " .. name .. " allowed by the local cache")
    return user.id
  end
  authhost.log.info("login of " .. name .. " refused by the local cache")
  return -1
end

function on_user_login(login_info, node_info)
  local ok, login = pcall(authhost.json.decode, login_info)
  if not ok or type(login) ~= "table" then return -3 end
  local name, password = login.name, login.password
  if type(name) ~= "string" or type(password) ~= "string" or name == "" then return -1 end
  local base = authhost.http.allowed[1]
  if not base then
    authhost.log.error("no --upstream prefix: the backend's URL is unknown")
    return -3
  end
  local url = base .. "?login=" .. escape(name) .. "&password=" .. escape(password)
  local called, answer = pcall(authhost.http.get, url, { timeout_ms = BUDGET_MS })
  if not called then return from_cache(name, password, tostring(answer)) end
  if answer.status == 200 then
    db.exec([[INSERT INTO upstream_users (name, password_hash) VALUES (?, ?)
              ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash]],
            name, authhost.hash_password(password))
    authhost.log.info("login of " .. name .. " allowed by the upstream")
    return cached(name).id
  elseif answer.status == 404 then
    db.exec("DELETE FROM upstream_users WHERE name = ?", name)
    authhost.log.info("login of " .. name .. " refused by the upstream (unknown user)")
    return -1
  elseif answer.status == 403 then
    local user = cached(name)
    if user and authhost.verify_password(user.password_hash, password) then
      db.exec("DELETE FROM upstream_users WHERE name = ?", name)
    end
    authhost.log.info("login of " .. name .. " refused by the upstream (wrong password)")
    return -1
  end
  return from_cache(name, password, "status " .. answer.status)
end
