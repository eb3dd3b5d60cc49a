-- A good plugin beside a broken one.
function on_new_node() return "primary" end
