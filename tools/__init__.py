"""Command-line tools (detect, synthesise, build records, serve, demo) and the REST server."""
