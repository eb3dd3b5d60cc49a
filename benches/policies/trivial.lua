-- The cheapest policy there is, for measuring the host and the service themselves.
function on_user_login(login_info, node_info) return 42 end
function on_user_signup(signup_info, node_info) return 0 end
function on_new_node(node_info) return "secondary" end
