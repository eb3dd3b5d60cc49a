-- Version 1 of a login policy: everyone is user 101.
function on_user_login(login_info, node_info)
  return 101
end
