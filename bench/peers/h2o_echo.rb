# mruby handler for h2o's /echo in bench/run.py (bench/peers/h2o.conf): answers a POST with
# its request body, with Content-Length (h2o would otherwise send the body chunked, which
# the other targets do not).
Proc.new do |env|
  if env["REQUEST_METHOD"] == "POST"
    # h2o gives no rack.input at all for a request without a body.
    input = env["rack.input"]
    body = input ? input.read : ""
    [200, {"content-type" => "application/octet-stream",
           "content-length" => body.bytesize.to_s}, [body]]
  else
    [405, {"content-type" => "text/plain", "allow" => "POST"}, ["POST only\n"]]
  end
end
