-- Recursion through C: each route nests C calls (Lua's own C functions, or authhost's Rust
-- ones calling back into Lua) until Lua's C-call limit stops it. A worker's stack must hold
-- every level before that limit, or the whole process dies of a stack overflow.
-- `login_info` names the route; "plain" answers 7.

local function gsub_function()
  -- Lua -> authhost's string.gsub (Rust) -> the replacement function (Lua) -> gsub ...
  local function replace(c)
    return (string.gsub("a", "a", replace))
  end
  return string.gsub("a", "a", replace)
end

local function gsub_table()
  -- gsub looks the match up in a table whose __index calls gsub again.
  local lookup = {}
  lookup.__index = function(t, k)
    return (string.gsub("a", "a", setmetatable({}, lookup)))
  end
  return string.gsub("a", "a", setmetatable({}, lookup))
end

local function transaction()
  -- authhost.db.transaction (Rust) runs a function that opens another transaction.
  local function again()
    return authhost.db.transaction(again)
  end
  return again()
end

local function find_in_replacement()
  -- string.find called from a gsub replacement that recurses through gsub.
  local function replace(c)
    string.find("a", "a")
    return (string.gsub("a", "a", replace))
  end
  return string.gsub("a", "a", replace)
end

local function tostring_metamethod()
  local mt = {}
  mt.__tostring = function() return tostring(setmetatable({}, mt)) end
  return tostring(setmetatable({}, mt))
end

local function format_metamethod()
  local mt = {}
  mt.__tostring = function() return string.format("%s", setmetatable({}, mt)) end
  return string.format("%s", setmetatable({}, mt))
end

local function sort_comparator()
  local function less(a, b)
    table.sort({3, 1, 2}, less)
    return a < b
  end
  table.sort({3, 1, 2}, less)
end

local function load_nested_code()
  local f, err = load("return " .. string.rep("(", 100000) .. "1" .. string.rep(")", 100000))
  if not f then error(err) end
  return f()
end

local function concat_metamethod()
  local mt = {}
  mt.__concat = function() return setmetatable({}, mt) .. "x" end
  return setmetatable({}, mt) .. "x"
end

local routes = {
  gsub_function = gsub_function,
  gsub_table = gsub_table,
  transaction = transaction,
  find_in_replacement = find_in_replacement,
  tostring_metamethod = tostring_metamethod,
  format_metamethod = format_metamethod,
  sort_comparator = sort_comparator,
  load_nested_code = load_nested_code,
  concat_metamethod = concat_metamethod,
}

function on_user_login(login_info, node_info)
  local route = routes[login_info]
  if route then
    route()
  end
  return 7
end
