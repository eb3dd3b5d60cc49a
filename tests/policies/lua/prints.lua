-- A chatty policy: print and authhost.log must reach the log, never stdout.
print("top-level print while loading")
function on_user_login(login_info, node_info)
  print("login attempt", login_info, 42, nil, true)
  authhost.log.info("info line")
  authhost.log.warn("warn line")
  authhost.log.error("error line")
  return 5
end
