-- A plugin that defines helpers but no callback: with it alone, every request is refused.
function normalize(name)
  return string.lower(name)
end
