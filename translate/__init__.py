"""Photo -> anime face translation. Subpackages by role: faces/ (face data), datasets/ (records,
builder, landmark layer, tf.data), models/ (networks and the registry of model families),
training/, evaluation/, inference/ (a trained run: loading, the photo -> anime pipeline, export).
The top-level modules are the CLIs (train, evaluate, export, photo2anime; translate.py is the
documented script path of photo2anime), what they share (cli) and the TensorFlow-free contracts
(contract, run_config). The map: README.md, Layout."""
