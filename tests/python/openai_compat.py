"""Drives a running llama-stack-rs server with the official `openai` SDK.

Usage: python openai_compat.py http://127.0.0.1:PORT
The server runs the scripted test provider (echo replies), see tests/serving/mod.rs.
"""
import sys

import openai

base = sys.argv[1]
client = openai.OpenAI(base_url=base + "/v1", api_key="not-needed")

ids = [m.id for m in client.models.list().data]
assert "scripted/chat-1" in ids and "scripted/embed" in ids, ids

r = client.chat.completions.create(
    model="scripted/chat-1",
    messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello world"}],
    temperature=0.2,
    max_tokens=16,
)
assert r.object == "chat.completion", r
assert r.choices[0].message.content == "hello world", r
assert r.choices[0].finish_reason == "stop", r
assert r.usage.total_tokens == 4, r.usage

stream = client.chat.completions.create(
    model="scripted/chat-1",
    messages=[{"role": "user", "content": "one two three"}],
    stream=True,
)
chunks = list(stream)
assert len(chunks) == 3, chunks
text = "".join(c.choices[0].delta.content or "" for c in chunks)
assert text == "one two three", text
assert chunks[-1].choices[0].finish_reason == "stop"

# Stored chat completions: the two above, newest first, each with its input messages.
stored = client.chat.completions.list(limit=10)
stored_ids = [x.id for x in stored.data]
assert r.id in stored_ids and chunks[0].id in stored_ids, stored_ids
assert stored_ids.index(chunks[0].id) < stored_ids.index(r.id), stored_ids
got = client.chat.completions.retrieve(r.id)
assert got.id == r.id and got.choices[0].message.content == "hello world", got
assert got.model_extra["input_messages"][1]["content"] == "hello world", got.model_extra
streamed = client.chat.completions.retrieve(chunks[0].id)
assert streamed.choices[0].message.content == "one two three", streamed
first_page = client.chat.completions.list(limit=1, order="asc")
assert len(first_page.data) == 1, first_page
try:
    client.chat.completions.retrieve("chatcmpl-does-not-exist")
    raise AssertionError("retrieving an unknown completion should fail")
except openai.NotFoundError as err:
    assert "not found" in str(err), err

c = client.completions.create(model="scripted/chat-1", prompt="say this")
assert c.choices[0].text == "say this", c
pieces = [x.choices[0].text for x in client.completions.create(model="scripted/chat-1", prompt="a b c", stream=True)]
assert "".join(pieces) == "a b c", pieces

e = client.embeddings.create(model="scripted/embed", input=["ab", "abcd"])
assert [d.embedding for d in e.data] == [[2.0, 1.0], [4.0, 1.0]], e

try:
    client.chat.completions.create(model="nope/x", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("expected a 404")
except openai.NotFoundError as err:
    assert "not found" in str(err), err

try:
    client.chat.completions.create(model="scripted/chat-1", messages=[{"role": "user", "content": "x"}], temperature=7)
    raise AssertionError("expected a 400")
except openai.BadRequestError as err:
    assert "temperature" in str(err), err

try:
    for _ in client.chat.completions.create(
        model="scripted/chat-1", messages=[{"role": "user", "content": "fail"}], stream=True
    ):
        pass
    raise AssertionError("expected the mid-stream error to raise")
except openai.APIError as err:
    assert "failed midway" in str(err), err

print("openai SDK", openai.__version__, "OK")
