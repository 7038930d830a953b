"""Custom layers; the manifest tests never import this."""
