-- authhost.json decodes what nodes send and encodes what policies build.
function on_user_login(login_info, node_info)
  local login = authhost.json.decode(login_info)
  local again = authhost.json.decode(authhost.json.encode(login))
  if again.name ~= login.name or again.tags[2] ~= "b" or again.nested.n ~= 1.5 then return -3 end
  if authhost.json.encode({1, 2, 3}) ~= "[1,2,3]" then return -3 end
  if authhost.json.encode({}) ~= "{}" then return -3 end
  return again.id
end
