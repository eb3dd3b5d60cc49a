-- Does not compile: a reload to this file must fail and keep the running set.
function on_user_login(login_info, node_info)
  return 1 +
end
