"""Using a trained run: loading it, the photo -> anime pipeline, SavedModel export."""
