-- Does not compile: a reload to this keeps the previous set live.
function on_user_login(login_info, node_info)
  return 3 +
end
