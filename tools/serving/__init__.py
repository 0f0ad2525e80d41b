"""A TensorFlow-Serving-compatible REST server for the project's SavedModels (library code).

  repository.py  model folders under a base path: versions, safe name resolution, loading, cache
  tfjson.py      TF Serving's JSON: predict requests -> tensors, outputs -> JSON, signature metadata
  app.py         the Starlette ASGI application (routes, limits, errors, thread pool)
  pipeline.py    POST /v1/pipelines/photo2anime (detection + alignment + a translator)

tools/serve.py is the absl entry point. Nothing here imports translate/ or tagnet/ at module
level: the pipeline imports translate.inference.pipeline only when first used.
"""
