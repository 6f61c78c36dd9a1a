-- wrk -s pipeline.lua URL -- DEPTH: each connection writes DEPTH GET requests at once and
-- waits for their DEPTH responses (HTTP/1.1 pipelining); wrk counts every response.
local batch

function init(args)
	local depth = tonumber(args[1]) or 1
	local one = wrk.format("GET", wrk.path)
	batch = string.rep(one, depth)
end

function request()
	return batch
end
