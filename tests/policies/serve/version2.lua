-- Generation test: every login is user 2.
function on_user_login(login_info, node_info) return 2 end
