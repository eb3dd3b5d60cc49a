-- First definer of on_user_login.
function on_user_login() return 1 end
