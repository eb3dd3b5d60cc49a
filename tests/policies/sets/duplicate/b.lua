-- Second definer of on_user_login: the set must not load.
function on_user_login() return 2 end
