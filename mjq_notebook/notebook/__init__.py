"""The notebook layer: what a notebook shows.

``display`` renders jobs, lists and queues as text and HTML (everything escaped), ``watch``
follows a queue in one background thread per queue for the live widgets, ``activity`` reads
the charts' counts from the server, and ``widgets`` holds the tail, publish form, dashboard
and explorer. Nothing in the core or the server layer imports this at module level.
"""
