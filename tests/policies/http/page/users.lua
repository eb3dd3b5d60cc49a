-- One of the two plugins whose status page tests/it/chromium.rs renders (a Lua one with
-- two callbacks); the test overwrites a copy of it with a broken save.
function on_user_login(login_info, node_info)
  return 1
end

function on_user_signup(signup_info, node_info)
  return 0
end
