"""The revoke side: which ids a batch is found under, and what a revoke of them does.

``links`` is pure (ids from requests, result trees, stamps); ``fanout`` turns
revoked ids into enqueued cancels; ``listener`` hears revoke broadcasts in a
worker; ``api`` holds the public helpers. Nothing is imported here, so that
the store can use ``links`` without loading the rest.
"""
