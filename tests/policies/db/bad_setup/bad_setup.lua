-- setup() fails on a SQL error: the set does not load, and the error names the problem.
function setup()
  authhost.db.exec("CREATE TABLE broken (")
end

function on_new_node(node_info)
  return "primary"
end
