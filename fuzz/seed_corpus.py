#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/ from the fixtures in
tests/data and a few hand-made edge cases. Idempotent; file names are the seeds' purpose."""
import json, os, pathlib, re

root = pathlib.Path(__file__).resolve().parents[1]
data = root / "tests" / "data"
corpus = root / "fuzz" / "corpus"

def put(target, name, content):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    (d / name).write_bytes(content)

def fixture(path):
    return (data / path).read_bytes()

# invocation_request: the host's envelopes and broken ones.
for f in ["http-invocation-request.json", "timer-invocation-request.json",
          "timer-invocation-request-no-monitor.json", "timer-invocation-request-past-due.json"]:
    put("invocation_request", f, fixture("functions-host/" + f))
put("invocation_request", "empty", "")
put("invocation_request", "no-data", '{"Metadata":{}}')
put("invocation_request", "escaped-strings",
    r'{"Data":{"req":{"Url":"http://x/api/GetLatestRun?a=\u00e9","Method":"G\u0045T","Query":{"a":"\u00e9"},'
    r'"Headers":{"If-None-Match":["\"a b\"","W/\"x\""],"X-Bad Name":["v"],"x-nl":["a\nb"]},'
    r'"Params":{"file":null},"Body":"{\"k\":1}"}},"Metadata":{"sys":{}}}')
put("invocation_request", "http-and-timer",
    '{"Data":{"t":{"IsPastDue":true,"ScheduleStatus":null},"req":{"Url":"u","Method":"POST","Headers":{"content-type":["text/plain"]},"Body":"x"}}}')
put("invocation_request", "timer-wrong-types", '{"Data":{"t":{"IsPastDue":"yes","ScheduleStatus":{"Last":1}}}}')

# forwarded_request: METHOD TARGET, header lines, blank line, body.
def req(name, text):
    put("forwarded_request", name, text)
req("ready", "GET /\n")
req("latest-run", "GET /api/GetLatestRun\nAccept: application/json\nX-Azure-Functions-InvocationId: 5f0c2a9e-8d3b-4f61-9e7a-1b2c3d4e5f60\n")
req("latest-run-svg", "GET /api/getlatestrun?format=svg&theme=dark&units=imperial\nOrigin: https://blog.example.org\n")
req("latest-run-bad-format", "GET /API/GetLatestRun?format=xml&theme=%00\n")
req("preflight", "OPTIONS /api/GetLatestRun\nOrigin: https://blog.example.org\nAccess-Control-Request-Method: GET\n")
req("not-allowed", "DELETE /api/GetLatestRun\n")
req("widget-js", "GET /api/widget/latest-run.js\nIf-None-Match: W/\"abc\", \"def\"\n")
req("widget-demo-star", "HEAD /api/WIDGET/DEMO.HTML\nIf-None-Match: *\n")
req("widget-if-none-match-space", "GET /api/widget/latest-run.js\nIf-None-Match: \"a b\"\nIf-None-Match: \"c\n")
req("widget-if-none-match-lines", "GET /api/widget/latest-run.js\nIf-None-Match: \"x\"\nIf-None-Match: W/\"y\",,\n")
req("widget-unknown", "GET /api/widget/..%2F..%2Fetc%2Fpasswd\n")
req("webhook-validation",
    "GET /api/StravaWebhook?hub.mode=subscribe&hub.verify_token=fuzz-verify-token-0b6f1c&hub.challenge=15f7d1a91c1f40f8a748fd134752feb3\n")
req("webhook-validation-wrong", "GET /api/StravaWebhook?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=x\n")
req("webhook-event", "POST /api/StravaWebhook\nContent-Type: application/json\n\n" + fixture("strava/webhook-event-create.json").decode())
req("webhook-not-json", "POST /api/StravaWebhook\n\n<html>")
req("invocation-http", "POST /GetLatestRun\nContent-Type: application/json\n\n" + fixture("functions-host/http-invocation-request.json").decode())
req("invocation-timer", "POST /RefreshToken\n\n" + fixture("functions-host/timer-invocation-request.json").decode())
req("invocation-get", "GET /Widget\n")
req("invocation-broken", "POST /StravaWebhook\n\n{\"Data\":")
req("chunked", "POST /api/GetLatestRun\nTransfer-Encoding: chunked\n\nabc")
req("deep-path", "GET //api//GetLatestRun/x/y?%zz=1&&=\n")
req("absolute-form", "GET http://localhost:7071/api/GetLatestRun?format=json\n")

# strava_decoders: Strava's answers and error bodies.
for f in ["athlete-activities.json", "activity-detail-run.json", "activity-photos.json",
          "token-exchange-response.json", "token-refresh-response.json", "error-400-bad-authorization-code.json",
          "error-400-bad-refresh-token.json", "error-401-invalid-token.json", "error-401-missing-scope.json",
          "error-404-not-found.json", "error-429.json", "error-500-generic.json"]:
    put("strava_decoders", f, fixture("strava/" + f))
put("strava_decoders", "list-mixed-visibility",
    json.dumps([
        {"id": 1, "name": "private run", "sport_type": "Run", "visibility": "only_me", "private": True, "start_date": "2025-10-10T05:58:11Z"},
        {"id": 2, "name": "ride", "sport_type": "Ride", "visibility": "everyone", "start_date": "2025-10-11T05:58:11Z"},
        {"id": 3, "name": "old style", "type": "Run", "private": False, "start_date": "2025-10-09T05:58:11Z", "distance": 1e308, "moving_time": 1,
         "map": {"summary_polyline": "_p~iF~ps|U_ulLnnqC_mqNvxq`@"}},
        {"id": 3, "name": None, "type": "Run", "private": False, "start_date": "2025-10-09T05:58:11Z"},
        {"id": 4, "sport_type": "Run", "visibility": "everyone", "start_date": "not a date"},
        {"id": 5, "sport_type": "Run", "visibility": "everyone", "private": True, "start_date": "2025-10-12T05:58:11Z"},
        {"id": 6, "sport_type": "TrailRun", "visibility": "followers_only", "start_date": "2025-10-13T05:58:11Z"},
    ]))
put("strava_decoders", "list-odd-numbers",
    '[{"id":7,"sport_type":"VirtualRun","visibility":"everyone","start_date":"2025-10-10T05:58:11+02:00",'
    '"distance":"12","moving_time":-5,"elapsed_time":1.5,"average_speed":"fast","kudos_count":1e3,'
    '"name":"\\u003cscript\\u003e & \\"quotes\\" \\ud83c\\udfc3","map":{"summary_polyline":"??"}}]')
put("strava_decoders", "detail-placeholder-photo",
    '{"id":8,"sport_type":"Run","photos":{"count":1,"primary":{"urls":{"100":"https://d3nn82uaxijpm6.cloudfront.net/assets/placeholder.png","600":"javascript:alert(1)"}}}}')
put("strava_decoders", "photos-odd", '[{"urls":{"5000":"http://x/a.jpg","abc":"https://y/b.jpg"},"placeholder":false},{"urls":null},{}]')
put("strava_decoders", "token-empty", '{"access_token":"","refresh_token":"fuzz-client-secret-7d2e","expires_at":"1"}')
put("strava_decoders", "fault-echoes-secret",
    '{"message":"Bad Request fuzz-client-secret-7d2e","errors":[{"resource":"Application","field":"client_secret","code":"fuzz-client-secret-7d2e"}]}')
put("strava_decoders", "html", "<html><body>502 Bad Gateway</body></html>")

# strava_rate_limit: header blocks from the sample, then a blank line and a 429 body.
text = fixture("strava/rate-limit-headers.txt").decode()
blocks = re.split(r"\n## ", text)
for i, block in enumerate(blocks[1:], 1):
    lines = [l for l in block.splitlines()[1:] if ":" in l and not l.startswith("#") and not l.startswith("HTTP/")]
    put("strava_rate_limit", f"sample-{i}", "\n".join(lines) + "\n\n" + fixture("strava/error-429.json").decode())
put("strava_rate_limit", "no-headers", "\n\n" + fixture("strava/error-429.json").decode())
put("strava_rate_limit", "odd-values",
    "X-RateLimit-Limit: 0,0\nX-RateLimit-Usage: 4294967295,4294967296\nx-readratelimit-limit: 100 , 1000\nX-ReadRateLimit-Usage: -1,abc\n\n")
put("strava_rate_limit", "daily-exhausted", "X-ReadRateLimit-Limit: 100,1000\nX-ReadRateLimit-Usage: 20,1000\n\n{}")

# webhook_event
for f in ["webhook-event-create.json", "webhook-event-deauthorize.json", "webhook-event-delete.json", "webhook-event-update.json"]:
    put("webhook_event", f, fixture("strava/" + f))
put("webhook_event", "updates-of-every-type",
    '{"object_type":"activity","object_id":1,"aspect_type":"update","owner_id":2,"subscription_id":3,'
    '"updates":{"title":"a\\u0000b","private":true,"n":1.5e300,"x":null,"o":{"a":[1]},"title":"again"}}')
put("webhook_event", "unknown-kinds", '{"object_type":"club","object_id":-9223372036854775808,"aspect_type":"","owner_id":0,"subscription_id":9223372036854775807}')
put("webhook_event", "missing-fields", '{"object_type":"activity"}')
put("webhook_event", "float-id", '{"object_type":"activity","object_id":1.0,"aspect_type":"create","owner_id":2,"subscription_id":3}')

# local_settings
put("local_settings", "example.json", (root / "local.settings.json.example").read_bytes())
put("local_settings", "full-connection-string",
    json.dumps({"Values": {"AzureWebJobsStorage": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;",
                           "WIDGET_ALLOWED_ORIGINS": "https://blog.example.org/, http://localhost:8080", "WIDGET_CACHE_SECONDS": 2592000,
                           "WIDGET_ROUTE_SHAPE": True, "LOG_FORMAT": "JSON", "RUST_LOG": "handler=debug,warp=info"}}))
put("local_settings", "bad-values", '{"Values":{"AzureWebJobsStorage":"UseDevelopmentStorage=true","STRAVA_TABLE_NAME":"1x","WIDGET_CACHE_SECONDS":"-1","RUST_LOG":"=[[["}}')
put("local_settings", "nested-value", '{"Values":{"AzureWebJobsStorage":{"a":1}}}')
put("local_settings", "sas", '{"Values":{"STRAVA_TABLE_CONNECTION":"AccountName=acct;SharedAccessSignature=sv=2022&sig=abc%3D","AzureWebJobsStorage":"x"}}')
put("local_settings", "not-json", "{IsEncrypted: false,")

# pasted_redirect
put("pasted_redirect", "full-url", "https://blog.example.org/strava/callback?state=9f2c1e&code=5c0a2f1be4d87a9c3e61f02b7d4a9c8e1f305b6d&scope=read,activity:read,activity:read_all")
put("pasted_redirect", "localhost", "http://localhost/exchange_token?state=&code=abc123&scope=read,activity:read")
put("pasted_redirect", "query-only", "state=&code=a%20b&scope=")
put("pasted_redirect", "bare-code", "  5c0a2f1be4d8 \n")
put("pasted_redirect", "denied", "http://localhost/exchange_token?state=&error=access_denied")
put("pasted_redirect", "no-code", "http://localhost/?code=&code=x")
put("pasted_redirect", "junk", "not a code!")
