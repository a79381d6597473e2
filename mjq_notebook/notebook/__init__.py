"""The notebook layer: what a notebook shows.

``display`` renders jobs, lists and queues as text and HTML (everything escaped): the import
path for ``formatting`` (plain text and the one row builder every table uses), ``markup``
(``escape``, the stylesheet from ``_static/display.css``, badges), ``job_detail`` (one job)
and ``tables`` (lists, a queue, a summary). ``watch``
follows a queue in one background thread per queue for the live widgets, ``activity`` reads
the charts' counts from the server, and ``widgets`` holds the tail, publish form, dashboard
and explorer. Nothing in the core or the server layer imports this at module level.
"""
