-- Like echo.lua's on_user_login, after a busy wait of login_info.ms milliseconds (CPU time,
-- by os.clock), so that requests are still in flight when a test stops the service.
function on_user_login(login_info, node_info)
  local login = authhost.json.decode(login_info)
  local until_ = os.clock() + (login.ms or 0) / 1000
  while os.clock() < until_ do end
  return login.id
end
