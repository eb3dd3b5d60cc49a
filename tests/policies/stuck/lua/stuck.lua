-- Every way a Lua policy could keep its worker past the deadline in C code, where the
-- instruction hook does not run; login_info names the form. Anything else is innocent (7).
local forms = {}

-- The pattern matcher backtracks about n^4 steps on these (minutes, in Lua's own C matcher).
local long = string.rep("a", 30000)
forms.find = function() return string.find(long, ".-.-.-.-b") end
forms.match = function() return long:match("(.-)(.-)(.-)(.-)b") end
forms.gmatch = function()
  for found in long:gmatch(".-.-.-.-b") do return found end
  return 0
end
forms.gsub = function() return (select(2, long:gsub(".-.-.-.-b", "x"))) end

-- A message handler that never returns, called for the error and for its own timeout.
forms.xpcall = function()
  return xpcall(function() error("first") end, function() while true do end end)
end

-- A finalizer that never returns: Lua runs finalizers with the hook off, whenever the
-- collector gets to them (here at once, by making garbage; else during a later request).
forms.gc = function()
  setmetatable({}, { __gc = function() while true do end end })
  for _ = 1, 200000 do local _ = {} end
  return 1
end

function on_user_login(login_info, node_info)
  local form = forms[login_info]
  if form then return form() end
  return 7
end
