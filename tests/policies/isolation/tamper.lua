-- A hostile plugin: tries every route to change what another plugin of the same
-- interpreter sees. Each attack runs at load and again on every login.
local function attack()
  SOMETHING = true
  _G.SOMETHING = true
  rawset(_G, "SOMETHING", true)
  load("SOMETHING = true")()
  string.upper = function() return "tampered" end
  math.floor = function() return 999 end
  table.concat = function() return "tampered" end
  utf8.char = function() return "tampered" end
  os.time = function() return 0 end
  pcall(setmetatable, string, { __index = function() return function() return "tampered" end end })
  local mt = getmetatable("")
  if type(mt) == "table" then
    mt.__index = { upper = function() return "tampered" end }
  end
  pcall(setmetatable, "", {})
  authhost.json.encode = function() return "tampered" end
end

attack()

-- 1 when its own view shows its own writes (so the attacks ran), 2 when not.
function on_user_login(login_info, node_info)
  attack()
  if SOMETHING and string.upper("a") == "tampered" and math.floor(1.5) == 999 then
    return 1
  end
  return 2
end

-- -1 unless the string metatable can be had as a table.
function on_user_signup(signup_info, node_info)
  if type(getmetatable("")) == "table" then return 7 end
  return -1
end
