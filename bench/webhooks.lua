-- Distinct valid store/order/statusUpdated webhooks: each request a new order id and hash.
-- Environment: BENCH_STORE_HASH, BENCH_TOKEN (the X-Bridge-Token), BENCH_FIRST_ORDER.
local store_hash = os.getenv("BENCH_STORE_HASH") or "bench01"
local token = os.getenv("BENCH_TOKEN") or ""
local first = tonumber(os.getenv("BENCH_FIRST_ORDER") or "1")
local threads = 0

function setup(thread)
  thread:set("thread_index", threads)
  threads = threads + 1
end

function init(args)
  counter = 0
  base = first + thread_index * 100000000
  wrk.method = "POST"
  wrk.path = "/webhooks/bigcommerce"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Bridge-Token"] = token
end

function request()
  counter = counter + 1
  local id = base + counter
  local body = string.format(
    '{"scope":"store/order/statusUpdated","store_id":"1025646","data":{"type":"order","id":%d,' ..
    '"status":{"previous_status_id":1,"new_status_id":11}},"hash":"%08x%032d","created_at":%d,"producer":"stores/%s"}',
    id, thread_index, counter, 1700000000 + counter, store_hash)
  return wrk.format(nil, nil, nil, body)
end
