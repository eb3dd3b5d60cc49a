-- SQL values and Lua values map both ways as contract §5 says; any mismatch raises an error
-- that names it.

local function check(what, got, expected_type, expected)
  if math.type(got) then
    if math.type(got) ~= expected_type then
      error(what .. ": expected " .. expected_type .. ", got " .. math.type(got))
    end
  elseif type(got) ~= expected_type then
    error(what .. ": expected " .. expected_type .. ", got " .. type(got))
  end
  if got ~= expected then error(what .. ": got " .. tostring(got)) end
end

function on_new_node(node_info)
  local db = authhost.db
  db.exec("CREATE TABLE IF NOT EXISTS v (n, i, r, t, b, flag)")
  db.exec("DELETE FROM v")
  local changed = db.exec("INSERT INTO v VALUES (?, ?, ?, ?, ?, ?)",
                          nil, 42, 1.5, "text", "\0\255\1", true)
  check("changes", changed, "integer", 1)
  local row = db.query("SELECT n, i, r, t, b, typeof(b) AS bt, typeof(t) AS tt, flag FROM v")[1]
  check("NULL", row.n, "nil", nil)
  check("INTEGER", row.i, "integer", 42)
  check("REAL", row.r, "float", 1.5)
  check("TEXT", row.t, "string", "text")
  check("TEXT type", row.tt, "string", "text")
  check("BLOB", row.b, "string", "\0\255\1")
  check("BLOB type", row.bt, "string", "blob")
  check("boolean", row.flag, "integer", 1)
  check("no rows", #db.query("SELECT * FROM v WHERE i = ?", -1), "integer", 0)
  check("last_insert_id", db.last_insert_id(), "integer", 1)
  local ok, message = pcall(db.query, "SELECT ?", {})
  if ok or not tostring(message):find("parameter 1 is a table") then
    error("a table parameter was not refused: " .. tostring(message))
  end
  -- Nested transactions are savepoints: the inner failure undoes only the inner insert.
  db.exec("DELETE FROM v")
  db.transaction(function()
    db.exec("INSERT INTO v (i) VALUES (1)")
    pcall(db.transaction, function()
      db.exec("INSERT INTO v (i) VALUES (2)")
      error("inner")
    end)
  end)
  local ids = db.query("SELECT group_concat(i) AS ids FROM v")[1].ids
  check("savepoints", ids, "string", "1")
  -- transaction returns what its function returns.
  local a, b = db.transaction(function() return "x", 7 end)
  check("transaction result", b, "integer", 7)
  return "primary"
end
