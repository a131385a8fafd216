#!/usr/bin/env bash
# Regenerates the Lambda events the tests drive through the handler, with the real SAM CLI.
# Run from this folder: bash generate.sh (needs `sam` on PATH or SAM=/path/to/sam).
set -euo pipefail
sam=${SAM:-sam}
export SAM_CLI_TELEMETRY=0
rest() { "$sam" local generate-event apigateway aws-proxy --stage Prod "$@"; }
http() { "$sam" local generate-event apigateway http-api-proxy --stage Prod "$@"; }

rest --method POST --path gpt2_model --resource /gpt2_model \
  --body '{"model_name": "gpt2-test", "prompts": ["Hello from API Gateway", "A second prompt"], "max_tokens": 5}' \
  > rest-gpt2-model.json
rest --method POST --path llama_model --resource /llama_model \
  --querystringparameters '{"model_name": "llama-test", "max_tokens": "4"}' \
  --body '["Hello from the original call shape"]' > rest-llama-model-original-shape.json
rest --method GET --path health --resource /health --body '' > rest-health.json
rest --method GET --path docs --resource /docs --body '' > rest-docs.json
rest --method POST --path gpt2_model --resource /gpt2_model \
  --body '{"model_name": "gpt2-test", "prompts": []}' > rest-bad-request.json
rest --method POST --path gpt2_model --resource /gpt2_model \
  --body '{"model_name": "gpt2-test", "prompts": ["Slow down"], "max_tokens": 64}' \
  > rest-deadline.json
http --method POST --path gpt2_model \
  --body '{"model_name": "gpt2-test", "prompts": ["Hello from an HTTP API"], "max_tokens": 5}' \
  > http-gpt2-model.json
http --method GET --path health --body '' > http-health.json
rest --method POST --path v1/completions --resource /v1/completions \
  --body '{"model": "gpt2-test", "prompt": "Hello from the OpenAI SDK", "max_tokens": 5, "temperature": 0}' \
  > rest-v1-completions.json
rest --method POST --path v1/completions --resource /v1/completions \
  --body '{"model": "gpt2-test", "prompt": "Stream me", "max_tokens": 5, "temperature": 0, "stream": true}' \
  > rest-v1-completions-stream.json
rest --method POST --path v1/chat/completions --resource /v1/chat/completions \
  --body '{"model": "llama-chat-test", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}' \
  > rest-v1-chat-completions.json
rest --method GET --path v1/models --resource /v1/models --body '' > rest-v1-models.json
http --method POST --path v1/completions \
  --body '{"model": "gpt2-test", "prompt": "Hello from an HTTP API", "max_tokens": 5}' \
  > http-v1-completions.json
# SAM's REST template fixes multiValueQueryStringParameters at foo=bar whatever the query string;
# API Gateway derives both fields from the same query string, so make them agree.
python3 - <<'PY'
import glob, json
for path in glob.glob("rest-*.json"):
    event = json.load(open(path))
    query = event.get("queryStringParameters") or {}
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} or None
    json.dump(event, open(path, "w"), indent=2)
PY
# A Lambda function URL sends the HTTP API's payload v2 on its own domain, stage $default;
# SAM CLI has no generator for it, so the HTTP API event is adapted.
python3 - <<'PY'
import json
event = json.load(open("http-gpt2-model.json"))
event["requestContext"].update(
    stage="$default", domainName="abcdefghij.lambda-url.us-east-1.on.aws", domainPrefix="abcdefghij"
)
event["requestContext"].pop("authentication", None)
event["requestContext"].pop("authorizer", None)
json.dump(event, open("function-url-gpt2-model.json", "w"), indent=2)
PY
# A message of the Batch API's chunk queue: the tests put their own chunk message in its body
# (SAM writes the body into the JSON unescaped, so a JSON body cannot be given here).
"$sam" local generate-event sqs receive-message --body 'CHUNK' > sqs-chunk.json
# The Batch API through API Gateway: the tests send every /v1/files and /v1/batches request of
# the SDK in this event, its method, path and body set to the request's.
rest --method POST --path v1/batches --resource /v1/batches --body 'BODY' > rest-v1-batches.json
