-- An innocent plugin: refuses every node unless something another plugin did leaks into
-- what it sees, in which case it would grant "primary" (the wrong allow of issue 12).
function on_new_node(node_info)
  if SOMETHING or rawget(_G, "SOMETHING") then return "primary" end
  if string.upper("a") ~= "A" or ("a"):upper() ~= "A" then return "primary" end
  if math.floor(1.5) ~= 1 then return "primary" end
  if table.concat({ "a", "b" }) ~= "ab" then return "primary" end
  if utf8.char(65) ~= "A" then return "primary" end
  if os.time() == 0 then return "primary" end
  if authhost.json.encode({ 1 }) ~= "[1]" then return "primary" end
  return "unauthorized"
end
