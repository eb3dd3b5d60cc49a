-- A save with a syntax error: the stray `end` on line 5 does not compile.
function on_user_login(login_info, node_info)
  return 303
end
end
