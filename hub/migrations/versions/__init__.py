"""The revisions, oldest first by number: NNNN_slug.py, each naming the one before it."""
