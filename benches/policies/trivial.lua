-- The trivial policy of the benchmarks: every callback answers at once.
function on_user_login(login_info, node_info) return 42 end
function on_user_signup(signup_info, node_info) return 0 end
function on_new_node(node_info) return "secondary" end
