-- Generation one of a policy that a reload test replaces: every login is user 1.
function on_user_login(login_info, node_info) return 1 end
