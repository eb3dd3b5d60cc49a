-- Fails while loading (line 3), not while answering.
local config = nil
local limit = config.max_users
function on_user_login() return 1 end
