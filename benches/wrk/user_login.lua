-- wrk's request for scripts/bench-http: POST /v1/user_login with the same body as
-- `authhost bench --listen http://…` sends (its default login and node).
wrk.method = "POST"
wrk.path = "/v1/user_login"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"login_info":"{\\"name\\":\\"alice\\",\\"password\\":\\"pw\\"}","node_info":"{\\"public_key\\":\\"k\\"}"}'
