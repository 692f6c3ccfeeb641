"""Serving: the inference engine behind the HTTP service (docs/design.md §6).

- `requests`, `errors`: the request/response models (also the HTTP schema) and client errors;
- `engine.Recommender`: a model artifact loaded for serving — recommend, explain, batches;
- `batching.RequestBatcher`: groups concurrent requests into batched forward passes, and runs
  explanations on a lane of their own that gives way to them;
- `profile`, `filters`, `sequels`, `ranking`, `explanations`: the pure steps of a request;
- `network`: the compiled passes, shape buckets and sharding; `compilations`: compile counting.

Importing this package loads nothing heavy: the request models can be used without JAX.
"""
