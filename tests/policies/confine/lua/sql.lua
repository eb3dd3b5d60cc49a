-- Tries SQL that reaches outside the policy's own database. login_info is
-- "WHAT TARGET"; every refused form raises, so the decision is an error naming it.
local attacks = {
  attach = function(target) authhost.db.exec("ATTACH DATABASE ? AS other", target) end,
  attach_literal = function(target) authhost.db.exec("ATTACH DATABASE '" .. target .. "' AS other") end,
  vacuum_into = function(target) authhost.db.exec("VACUUM INTO '" .. target .. "'") end,
  vacuum = function() authhost.db.exec("VACUUM") end,
  load_extension = function(target) authhost.db.query("SELECT load_extension(?)", target) end,
  journal_mode = function() authhost.db.query("PRAGMA journal_mode = DELETE") end,
  writable_schema = function() authhost.db.exec("PRAGMA writable_schema = ON") end,
  database_list = function() authhost.db.query("PRAGMA database_list") end,
  user_version_write = function() authhost.db.exec("PRAGMA user_version = 7") end,
}

function setup()
  authhost.db.exec("CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT)")
end

function on_user_login(login_info, node_info)
  local what, target = login_info:match("^(%S+)%s*(.*)$")
  if what == "allowed" then
    -- What a policy needs keeps working: reads, writes, read-only schema pragmas.
    authhost.db.exec("INSERT INTO notes(body) VALUES (?)", "hello")
    local rows = authhost.db.query("SELECT count(*) AS n FROM notes")
    local columns = authhost.db.query("PRAGMA table_info(notes)")
    local version = authhost.db.query("PRAGMA user_version")
    if rows[1].n >= 1 and #columns == 2 and version[1].user_version == 0 then return 1 end
    return 2
  end
  attacks[what](target)
  return 3
end
