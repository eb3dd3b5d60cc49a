-- Asks the URL it is given (login_info = {"url": ...}) with no pcall: a refused URL is the
-- request's error. 1 when the answer is 200, -1 otherwise.
function on_user_login(login_info, node_info)
  local url = authhost.json.decode(login_info).url
  local answer = authhost.http.get(url)
  if answer.status == 200 then return 1 end
  return -1
end
