-- Scripts that run away with time or memory, chosen by the first argument.
function on_user_login(which, node_info)
  if which == "spin" then
    while true do end
  elseif which == "spin_in_pcall" then
    -- A timeout must not be swallowed by pcall.
    while true do pcall(function() while true do end end) end
  elseif which == "hog" then
    local t = {}
    for i = 1, math.maxinteger do t[i] = string.rep("x", 1024) .. i end
  elseif which == "busy_200ms" then
    local stop = os.clock() + 0.2
    while os.clock() < stop do end
    return 2
  end
  return 1
end
