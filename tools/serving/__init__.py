"""A TensorFlow-Serving-compatible REST server for the project's SavedModels (library code).

  repository.py  model folders under a base path: versions, safe name resolution, loading, cache
  tfjson.py      TF Serving's JSON: predict requests -> tensors, outputs -> JSON, signature metadata
  app.py         the Starlette ASGI application (routes, limits, errors, thread pool)
  pipeline.py    POST /v1/pipelines/photo2anime (detection + alignment + a translator)
  image_limits.py  an encoded image's size from its header, as TensorFlow's decoders read it
  limits.py      bounded work queues (503 + Retry-After) and body reading (size, timeout)
  connections.py uvicorn protocol with a connection cap and request-head time / size bounds
  access.py      Host header (DNS rebinding) and cross-origin POST checks, CORS

tools/serve.py is the absl entry point. Nothing here imports translate/ or tagnet/ at module
level: the pipeline imports translate.inference.pipeline only when first used.
"""
