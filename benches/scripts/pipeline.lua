-- wrk script: send `depth` requests back to back per write (HTTP pipelining).
-- Usage: wrk -s benches/scripts/pipeline.lua URL -- DEPTH
local depth = 16
local req

function init(args)
   depth = tonumber(args[1]) or depth
   local one = wrk.format(nil, nil)
   req = string.rep(one, depth)
end

function request()
   return req
end
