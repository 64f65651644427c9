"""Drives a running llama-stack-rs server with `llama-stack-client` (Llama Stack routes).

Usage: python llama_stack_client_compat.py http://127.0.0.1:PORT
"""
import sys

import llama_stack_client
from llama_stack_client import LlamaStackClient

client = LlamaStackClient(base_url=sys.argv[1])

assert client.inspect.health().status == "OK"
assert client.inspect.version().version == "0.7.1"

routes = client.routes.list()
paths = {(r.method, r.route) for r in routes}
assert ("POST", "/v1/chat/completions") in paths, paths

providers = client.providers.list()
assert [p.provider_id for p in providers] == ["scripted"], providers
p = client.providers.retrieve("scripted")
assert p.provider_type == "inline::scripted" and p.api == "inference", p

models = client.models.list()
ids = [m.id for m in models]
assert "scripted/chat-1" in ids, ids
m = client.models.retrieve("scripted/embed")
assert m.identifier == "scripted/embed" and m.model_type == "embedding", m

r = client.chat.completions.create(
    model="scripted/chat-1", messages=[{"role": "user", "content": "from the llama stack client"}]
)
assert r.choices[0].message.content == "from the llama stack client", r
text = "".join(
    c.choices[0].delta.content or ""
    for c in client.chat.completions.create(
        model="scripted/chat-1", messages=[{"role": "user", "content": "x y"}], stream=True
    )
)
assert text == "x y", text
e = client.embeddings.create(model="scripted/embed", input="abc")
assert e.data[0].embedding == [3.0, 1.0], e

try:
    client.models.retrieve("nope/x")
    raise AssertionError("expected a 404")
except llama_stack_client.NotFoundError:
    pass

print("llama-stack-client", llama_stack_client.__version__, "OK")
