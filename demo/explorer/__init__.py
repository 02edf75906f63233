"""The Explorer tab: its builder and handlers (``tab``), the runs it lists, their views, and the
panels that evaluate an uploaded set and compare two runs."""
