-- The only real plugin here.
function on_new_node() return "primary" end
