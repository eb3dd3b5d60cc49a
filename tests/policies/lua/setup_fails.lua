-- setup() runs once per load; an error there is a load error.
function setup()
  error("cannot create the users table")  -- line 3
end
function on_user_login() return 1 end
