-- wrk script for bench/run.sh: POST a small JSON order to the URL given to
-- wrk, each request with an Idempotency-Key no other request used, so an
-- idempotency store sees only new keys (the expensive path: claim the key,
-- forward, store the response).
--
--   wrk -s bench/post-idempotent.lua http://127.0.0.1:8080/api/v1/orders -- RUN_ID
--
-- RUN_ID makes keys unique across runs against the same store; each wrk
-- thread adds its own number and a counter.

local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("thread_no", threads)
end

local prefix = ""
local n = 0

function init(args)
   prefix = (args[1] or tostring(os.time())) .. "-" .. tostring(thread_no) .. "-"
   wrk.method = "POST"
   wrk.body = '{"client_ref":"bench-0001","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}]}'
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   n = n + 1
   wrk.headers["Idempotency-Key"] = prefix .. n
   return wrk.format()
end
