"""Files and vector stores through the official `openai` SDK, unchanged, against a
llama-stack-rs server whose run config has a default embedding model.

Usage: openai_vector_stores.py <base-url>; prints OK at the end.
"""
import io
import sys
import time

import openai

base = sys.argv[1]
client = openai.OpenAI(base_url=base + "/v1", api_key="unused")

notes = b"# Tides\n\nThe moon pulls the oceans, which makes the tides rise twice a day."
other = b"Bees build hexagonal wax cells to store honey and raise their young."

f = client.files.create(file=("tides.md", io.BytesIO(notes), "text/markdown"), purpose="assistants")
assert f.id.startswith("file-") and f.bytes == len(notes) and f.filename == "tides.md", f
assert f.purpose == "assistants"
assert any(x.id == f.id for x in client.files.list(purpose="assistants")), "listed"
assert client.files.retrieve(f.id).filename == "tides.md"
assert client.files.content(f.id).read() == notes

g = client.files.create(
    file=("bees.txt", io.BytesIO(other), "text/plain"),
    purpose="assistants",
    expires_after={"anchor": "created_at", "seconds": 7200},
)
assert g.expires_at == g.created_at + 7200, g

try:
    client.files.create(file=("x.txt", io.BytesIO(b"x"), "text/plain"), purpose="fine-tune")
    raise AssertionError("bad purpose accepted")
except openai.BadRequestError:
    pass

vs = client.vector_stores.create(name="docs", metadata={"team": "oceans"})
assert vs.id.startswith("vs_") and vs.name == "docs", vs
assert vs.metadata["team"] == "oceans" and vs.metadata["embedding_dimension"] == "384", vs.metadata

vf = client.vector_stores.files.create(vector_store_id=vs.id, file_id=f.id, attributes={"kind": "notes"})
assert vf.status == "completed", vf
assert vf.attributes == {"kind": "notes"}, vf.attributes

batch = client.vector_stores.file_batches.create(vector_store_id=vs.id, file_ids=[g.id])
for _ in range(600):
    batch = client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=vs.id)
    if batch.status != "in_progress":
        break
    time.sleep(0.05)
assert batch.status == "completed" and batch.file_counts.completed == 1, batch

store = client.vector_stores.retrieve(vs.id)
assert store.file_counts.completed == 2 and store.file_counts.total == 2, store.file_counts

page = client.vector_stores.search(
    vector_store_id=vs.id,
    query="why do tides happen",
    max_num_results=2,
    filters={"type": "eq", "key": "kind", "value": "notes"},
)
hits = list(page.data) if hasattr(page, "data") else list(page)
assert len(hits) == 1 and hits[0].file_id == f.id and hits[0].filename == "tides.md", hits
assert "moon" in hits[0].content[0].text

page = client.vector_stores.search(vector_store_id=vs.id, query="honey", extra_body={"search_mode": "hybrid"})
hits = list(page.data) if hasattr(page, "data") else list(page)
assert hits[0].file_id == g.id, hits

listed = [x.id for x in client.vector_stores.files.list(vector_store_id=vs.id)]
assert sorted(listed) == sorted([f.id, g.id]), listed

parts = list(client.vector_stores.files.content(file_id=f.id, vector_store_id=vs.id))
assert any("moon" in p.text for p in parts), parts

updated = client.vector_stores.files.update(file_id=f.id, vector_store_id=vs.id, attributes={"kind": "reviewed"})
assert updated.attributes == {"kind": "reviewed"}

deleted = client.vector_stores.files.delete(file_id=f.id, vector_store_id=vs.id)
assert deleted.deleted

renamed = client.vector_stores.update(vs.id, name="renamed")
assert renamed.name == "renamed"
assert any(s.id == vs.id for s in client.vector_stores.list())

assert client.vector_stores.delete(vs.id).deleted
try:
    client.vector_stores.retrieve(vs.id)
    raise AssertionError("deleted store still readable")
except openai.BadRequestError:
    pass  # Llama Stack answers 400 for anything missing under /v1/vector_stores

assert client.files.delete(f.id).deleted
try:
    client.files.retrieve(f.id)
    raise AssertionError("deleted file still readable")
except openai.NotFoundError:
    pass
print("OK")
