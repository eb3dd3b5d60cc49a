-- Generation test: every login is user 1. SIGHUP tests replace this file by version2.lua.
function on_user_login(login_info, node_info) return 1 end
