-- Returns a value chosen by the first argument, to drive every row of the mapping (§2).
local values = {
  int42 = function() return 42 end,
  one = function() return 1 end,
  maxint = function() return math.maxinteger end,
  zero = function() return 0 end,
  minus1 = function() return -1 end,
  minus3 = function() return -3 end,
  minus2 = function() return -2 end,
  minus4 = function() return -4 end,
  mininteger = function() return math.mininteger end,
  float42 = function() return 42.0 end,
  float_half = function() return 1.5 end,
  nan = function() return 0/0 end,
  huge = function() return math.huge end,
  neg_huge = function() return -math.huge end,
  two_pow_63 = function() return 2.0^63 end,
  string42 = function() return "42" end,
  truth = function() return true end,
  falsity = function() return false end,
  nothing = function() return nil end,
  no_value = function() end,
  table = function() return {42} end,
  func = function() return print end,
  multi_int_first = function() return 7, "extra" end,
  multi_string_first = function() return "7", 7 end,
  primary = function() return "primary" end,
  secondary = function() return "secondary" end,
  async = function() return "async" end,
  unauthorized = function() return "unauthorized" end,
  Primary = function() return "Primary" end,
  admin = function() return "admin" end,
  float_minus1 = function() return -1.0 end,
}

function on_user_login(which, node_info)
  return values[which]()
end

function on_user_signup(which, node_info)
  return values[which]()
end

function on_new_node(which)
  return values[which]()
end
