-- Broken on line 3.
function on_user_login(a, b)
  return = 1
end
