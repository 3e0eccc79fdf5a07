"""Getting batches to the API: the ``pump`` that batches, sends and retries, and the ``replies`` it acts on."""
