-- Generation two: every login is user 2, and nodes are now asked too.
function on_user_login(login_info, node_info) return 2 end
function on_new_node(node_info) return "secondary" end
